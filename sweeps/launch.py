"""Launch a sweep: preflight (sweeps/preflight.py) before any compute, then Ray Tune.

The order matters: everything a user can get wrong is checked before Ray starts and before
anything is written to MLflow, so a bad input leaves no half-written sweep behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from sweeps.base_scores import BaseScoring
from sweeps.config import ConfigError, SweepConfig, load_config, resolve_path
from sweeps.preflight import (
    LaunchPlan,
    benchmark_mirror,
    coerce_config,
    preflight,
)
from sweeps.provenance import provenance_tags
from sweeps.space import describe
from sweeps.state import (
    SPEC_FILE,
    TERMINAL,
    WORK_DIR,
    SweepState,
    study_storage,
    sweep_directory,
    write_json_atomic,
)

RELAUNCH_CONFIG = "launch_config.yaml"  # what `sweep resume` re-checks and runs with
DRIVER_LOCK = "driver.lock"  # held by the one driver (launch or resume) running a sweep


def _data_paths(plan: LaunchPlan) -> dict[str, Path]:
    paths = {"train": Path(plan.spec.train_path)}
    if plan.spec.heldout_path:
        paths["heldout"] = Path(plan.spec.heldout_path)
    return paths


# --------------------------------------------------------------------------- launch
def resolved_config(plan: LaunchPlan) -> dict[str, Any]:
    raw = plan.config.model_dump(mode="json")
    raw["data"]["train"] = plan.spec.train_path
    raw["data"]["heldout"] = plan.spec.heldout_path
    raw["objective"].update(metric=plan.objective_metric, mode=plan.objective_mode)
    raw["data"]["task_metric"] = plan.task_metric
    return raw


def relaunch_config(plan: LaunchPlan) -> dict[str, Any]:
    """The config ``sweep resume`` re-checks: as launched, with absolute data paths (the
    prepared files, when a prepare: section made them; it is not run twice)."""
    data = {"train": plan.spec.train_path, "heldout": plan.spec.heldout_path}
    config = plan.config.model_copy(update={"prepare": None,
                                            "data": plan.config.data.model_copy(update=data)})  # fmt: skip
    return config.model_dump(mode="json", exclude_unset=False)


def spec_record(spec: Any) -> dict[str, Any]:
    """The trial spec as JSON (the benchmark plan left out): what promote and compare re-read."""
    from dataclasses import asdict

    return asdict(replace(spec, benchmarks=None))


def prepare_for_sweep(
    config: SweepConfig, *, config_dir: Path, out_dir: Path, progress: Any
) -> tuple[SweepConfig, Any]:
    """Run ``sweep data prepare`` on data.train into ``out_dir``; the config, pointed at the
    prepared train and held-out files, and what the preparation did."""
    from evals.benchmarks import BenchmarkError
    from sweeps.prepare import PrepareOptions, prepare_data
    from sweeps.space import candidate_values

    steps, data = config.prepare, config.data
    assert steps is not None
    try:
        mirror = benchmark_mirror(config, config_dir=config_dir)
    except BenchmarkError as exc:
        raise ConfigError(f"benchmarks.mirror: {exc}") from None
    longest = max(int(v) for v in candidate_values(config, "sequence_len"))
    switches = steps.model_dump(exclude={"check_seq_len"})
    options = PrepareOptions(
        inputs=(resolve_path(data.train, config_dir=config_dir),), out_dir=out_dir,
        fmt=data.format, columns=dict(data.columns), template=data.template,
        instruction=data.instruction, label_field=data.label_field,
        heldout=resolve_path(data.heldout, config_dir=config_dir) if data.heldout else None,
        benchmarks=tuple(config.benchmarks.tasks) if mirror else (), mirror=mirror,
        max_seq_len=longest if steps.check_seq_len else None,
        model=config.base_model if steps.check_seq_len else None,
        heldout_fraction=data.val_set_size, seed=data.split_seed, **switches,
    )  # fmt: skip
    progress(f"Preparing {options.inputs[0]} (sweep data prepare) ...")
    prepared = prepare_data(options, progress=progress)
    update: dict[str, Any] = {"train": str(prepared.out_dir / "train.jsonl"), "format": "auto", "columns": {},
              "instruction": None, "label_field": None,
              "heldout": str(prepared.out_dir / "heldout.jsonl")}  # fmt: skip
    return config.model_copy(update={"data": data.model_copy(update=update)}), prepared


def new_sweep_name(config: SweepConfig) -> str:
    return f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def launch_sweep(
    config: str | Path | SweepConfig | dict[str, Any],
    *,
    name: str | None = None,
    state_dir: str | Path | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    console: Console | None = None,
) -> SweepState:
    """Validate, score the base model, run the sweep and return its final state.

    ``num_gpus`` sets the GPUs of a local Ray; on a machine without CUDA they are logical GPUs:
    Ray packs and assigns them (CUDA_VISIBLE_DEVICES), and the trials train on CPU."""
    console = console or Console()
    say = lambda text: console.print(text, highlight=False)  # noqa: E731
    config, config_path, config_dir = coerce_config(config)
    sweep_name = name or new_sweep_name(config)
    directory = sweep_directory(Path(state_dir or config.tracking.state_dir), sweep_name)
    if directory.exists():
        raise ConfigError(
            f"sweep {sweep_name!r} already exists at {directory}; pick another --name"
        )
    try:  # a failure before the sweep is created leaves nothing behind, prepared data included
        if config.prepare is not None:
            directory.mkdir(parents=True)
            config, _ = prepare_for_sweep(config, config_dir=config_dir,
                                          out_dir=directory / "data", progress=say)  # fmt: skip
        plan, base, base_bench = _checked_and_scored(
            config, config_path=config_path, config_dir=config_dir, background=True,
                                         say=say, address=address, num_gpus=num_gpus)  # fmt: skip
    except BaseException:
        if config.prepare is not None:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    from sweeps import _tune
    from sweeps._tracking import SweepTracker

    # Ray's processes start while the MLflow parent run is made: the first trial starts sooner
    started = _tune.start_ray(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    try:
        config = plan.config
        tracker = SweepTracker(
            config.tracking.mlflow_uri, config.tracking.experiment or config.name
        )
        state = _create_sweep(plan, tracker, directory=directory)
        if base_bench is not None:
            from sweeps.benchmarking import log_base_scores

            log_base_scores(tracker, state.parent_run_id, base_bench, phase="proxy")
        say(f"Sweep {state.name}: {plan.num_samples} trials, objective {plan.objective_metric} "
            f"({plan.objective_mode})")  # fmt: skip
        base.record(state, tracker)
        with driver_lock(state.path):
            _run(plan, state, tracker, base=base, address=address, num_cpus=num_cpus,
                 num_gpus=num_gpus, console=console)  # fmt: skip
    finally:
        if started:
            _tune.stop_ray()
    return state


def resume_sweep(
    sweep: str, *, state_dir: str | Path, address: str | None = None,
    num_cpus: int | None = None, num_gpus: int | None = None, console: Console | None = None,
) -> SweepState:  # fmt: skip
    """Continue a sweep whose driver stopped: finished trials stay finished, unfinished ones
    restart from their last checkpoint, and the MLflow runs and the Optuna study carry on."""
    from sweeps.state import load_state

    console = console or Console()
    say = lambda text: console.print(text, highlight=False)  # noqa: E731
    try:
        state = load_state(sweep, state_dir=Path(state_dir))
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    with driver_lock(state.path):
        if state.status == "completed":
            say(f"Sweep {state.name} is already completed: nothing to resume.")
            return state
        from sweeps import _tune
        from sweeps._storage import set_aside_damaged_state

        path = state.path / RELAUNCH_CONFIG
        config = load_config(path)
        if not _tune.can_resume(config, state.path):
            where = _tune.checkpoint_root(config, state.path)
            raise ConfigError(f"sweep {state.name}: no Ray experiment state under {where}")
        for name in set_aside_damaged_state(_tune.experiment_path(config, state.path)):
            say(f"Ray's {name} was cut short (renamed .damaged-{name}): resuming from the "
                "state saved before it")  # fmt: skip
        plan, base, _ = _checked_and_scored(config, config_path=path, config_dir=path.parent,
                                            say=say, address=address, num_gpus=num_gpus,
                                            background=False)  # fmt: skip
        base.recorded = bool(state.base_metrics)  # a launch stopped before it recorded them: now
        from sweeps._tracking import SweepTracker

        tracker = SweepTracker(state.mlflow_uri, config.tracking.experiment or config.name)
        tracker.reopen(state.parent_run_id)
        ended = sum(t.status in TERMINAL for t in state.trials.values())
        say(f"Resuming sweep {state.name}: {ended} of {plan.num_samples} trials ended.")
        _run(plan, state, tracker, base=base, address=address, num_cpus=num_cpus,
             num_gpus=num_gpus, console=console, resume=True)  # fmt: skip
    return state


@contextlib.contextmanager
def driver_lock(directory: Path) -> Iterator[None]:
    """One driver per sweep: a second launch or resume of a running sweep is refused."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(directory / DRIVER_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"sweep {directory.name} is running in another process ({directory / DRIVER_LOCK} is "
            "held); wait for it, or stop it first"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _checked_and_scored(
    config: SweepConfig, *, config_path: Path | None, config_dir: Path, say: Any,
    address: str | None, num_gpus: int | None, background: bool,
) -> tuple[LaunchPlan, BaseScoring, Any]:  # fmt: skip
    """Preflight, the base model's held-out scores (cached, else computed beside the trials when
    ``background``) and its proxy benchmark scores (cached): what launch and resume both do
    before Ray starts."""
    plan = preflight(config, config_path=config_path, config_dir=config_dir, progress=say,
                     address=address, logical_gpus=num_gpus)  # fmt: skip
    plan, base_bench = _base_benchmarks(plan, say=say)  # before the thread: all the cores
    # beside the trials on CPU only: on a GPU it would share the trials' memory
    base = BaseScoring(plan, say=say, background=background and plan.spec.device == "cpu")
    return plan, base, base_bench


def _base_benchmarks(plan: LaunchPlan, *, say: Any) -> tuple[LaunchPlan, Any]:
    """The base model's proxy benchmark scores, put into the plan every trial receives."""
    if plan.spec.benchmarks is None or not plan.spec.benchmarks.tasks:
        return plan, None
    from sweeps.benchmarking import score_base_proxy

    benchmarks, scores = score_base_proxy(plan.spec, say=say)
    return replace(plan, spec=replace(plan.spec, benchmarks=benchmarks)), scores


def _create_sweep(plan: LaunchPlan, tracker: Any, *, directory: Path) -> SweepState:
    """The sweep's directory, state.json and MLflow parent run (after preflight passed)."""
    config = plan.config
    directory.mkdir(parents=True, exist_ok=config.prepare is not None)  # prepare made it
    resolved = resolved_config(plan)
    (directory / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (directory / RELAUNCH_CONFIG).write_text(yaml.safe_dump(relaunch_config(plan), sort_keys=False))
    tags = provenance_tags(
        seeds={
            "training": config.training.seed,
            "search": config.search.seed,
            "split": config.data.split_seed,
        },
        digests=plan.digests,
    )
    tags.update(
        {
            "base_model": config.base_model,
            "base_model.kind": plan.model_kind,
            "objective": f"{plan.objective_metric} ({plan.objective_mode})",
            **{f"dataset.{name}.rows": str(count) for name, count in plan.rows.items()},
        }
    )
    artifacts = {"search_space.json": json.dumps(describe(config), indent=2)}
    benchmarks = plan.spec.benchmarks
    if benchmarks is not None:
        artifacts["benchmarks_plan.json"] = json.dumps(benchmarks.describe(), indent=2)
        tags["benchmarks.tasks"] = ",".join(benchmarks.tasks) or "none"
        tags["benchmarks.skipped"] = "; ".join(benchmarks.skipped.values()) or "none"
    parent = tracker.start_sweep(directory.name, config=resolved, tags=tags, artifacts=artifacts)
    from trainers.models import model_digest

    write_json_atomic(directory / SPEC_FILE, spec_record(plan.spec))
    state = SweepState(
        name=directory.name,
        directory=str(directory),
        config_path=str(plan.config_path or ""),
        objective_metric=plan.objective_metric,
        objective_mode=plan.objective_mode,
        task_metric=plan.task_metric,
        mlflow_uri=config.tracking.mlflow_uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=parent,
        base_model=config.base_model,
        base_model_digest=model_digest(Path(plan.spec.model_path)),
        digests=dict(plan.digests),
    )
    tracker.set_tags(parent, {"base_model.sha256": state.base_model_digest})
    tracker.set_sweep_view(state.name, parent_run_id=parent, sort_metric=plan.objective_metric,
                           ascending=plan.objective_mode == "min", columns=view_columns(plan))  # fmt: skip
    tracker.log_datasets(parent, {role: (str(path), plan.digests[role], plan.rows[role])
                                  for role, path in _data_paths(plan).items()})  # fmt: skip
    if config.prepare is not None:
        tracker.log_artifact_dirs(parent, {"data_prep": directory / "data"})
    state.save()
    return state


def _run(
    plan: LaunchPlan,
    state: SweepState,
    tracker: Any,
    *,
    base: BaseScoring,
    address: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    console: Console,
    resume: bool = False,
) -> None:
    """Ray Tune from start (or from where it stopped) to end; the parent run is closed
    whatever happens. The base model's scores are recorded as soon as they are ready."""
    from sweeps import _tune
    from sweeps.display import LiveTable
    from sweeps.recorder import SweepRecorder, catch_up_logged_steps, forget_lost_trials

    config = plan.config
    started = _tune.start_ray(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    state.status = "interrupted"
    try:
        with LiveTable(console) as live:
            recorder = SweepRecorder(
                state,
                tracker,
                live,
                logged_generations=config.evaluation.logged_generations,
                poll=lambda: base.record(state, tracker),
            )
            if resume:
                catch_up_logged_steps(state, tracker)
                grid = _tune.resume_tuner(config, spec=plan.spec, recorder=recorder,
                                          sweep_dir=state.path)  # fmt: skip
            else:
                grid = _tune.run_tuner(
                    config,
                    spec=plan.spec,
                    recorder=recorder,
                    sweep_dir=state.path,
                    metric=plan.objective_metric,
                    mode=plan.objective_mode,
                    max_rungs=plan.max_rungs,
                    num_samples=plan.num_samples,
                )
        if _tune.every_trial_ended(grid):  # not after Ctrl-C, which makes fit() return early
            forget_lost_trials(state, tracker)
        ended = [t for t in state.trials.values() if t.status != "running"]
        done = len(ended) == len(state.trials) >= plan.num_samples
        if done or base.ready():
            base.join()  # the summary reads the trials against it
            base.record(state, tracker)
        if done:
            from sweeps.benchmarking import judge_trials

            say = lambda text: console.print(text, highlight=False)  # noqa: E731
            judge_trials(state, tracker, spec=plan.spec, say=say)
            log_sweep_pictures(state, tracker, storage_url=study_storage(config, state.path),
                               say=say)  # fmt: skip
        state.status = "completed" if done else "interrupted"
    finally:
        _finish(state, tracker)
        if started:
            _tune.stop_ray()


def view_columns(plan: LaunchPlan) -> list[str]:
    """The columns of the sweep's MLflow view: objective, loss, status, duration and the knobs
    the search varies (fixed ones are the same on every row)."""
    from sweeps.space import active_specs, fixed_value

    second = "train/loss" if plan.objective_metric == "heldout/loss" else "heldout/loss"
    knobs = [k for k, spec in active_specs(plan.config).items() if fixed_value(k, spec) is None]
    return [f"metrics.`{plan.objective_metric}`", f"metrics.`{second}`", "tags.`status`",
            "attributes.`Duration`", *(f"params.`{k}`" for k in knobs)]  # fmt: skip


def log_sweep_pictures(state: SweepState, tracker: Any, *, storage_url: str,
                       say: Callable[[str], None]) -> None:  # fmt: skip
    """Optuna's pictures of the study and the trials table on the parent run. They describe
    the sweep, never decide it: a failure to draw is one line, and the sweep ends as it was."""
    import tempfile

    from sweeps.study_report import PICTURES_DIR, trials_table, write_study_pictures

    try:
        with tempfile.TemporaryDirectory() as tmp:
            pictures = write_study_pictures(storage_url, study_name=state.name, out_dir=Path(tmp),
                                            metric=state.objective_metric)  # fmt: skip
            tracker.log_artifact_dirs(state.parent_run_id, {PICTURES_DIR: Path(tmp)})
        tracker.log_trials_table(state.parent_run_id, trials_table(state))
    except Exception as exc:  # a picture must not fail a finished sweep
        say(f"warning: the sweep's pictures were not logged to MLflow: {exc}")
        return
    for title, why in pictures.skipped.items():
        say(f"MLflow picture skipped, {title}: {why}")


def _finish(state: SweepState, tracker: Any) -> None:
    best = state.best_trial()
    metrics: dict[str, float] = {}
    tags = {"status": state.status, "trials": str(len(state.trials))}
    if best is not None:
        metrics = {f"best/{k}": v for k, v in best.metrics.items()}
        tags.update(
            {
                "best_trial": best.trial_id,
                "best_run_id": best.run_id,
                "best_adapter": best.adapter_path or "",
            }
        )
    counts = {
        s: sum(t.status == s for t in state.trials.values())
        for s in ("completed", "pruned", "failed")
    }
    metrics.update({f"trials/{k}": float(v) for k, v in counts.items()})
    metrics["cost/device_hours"] = state.device_hours()
    gain = state.gain_per_device_hour()
    if gain is not None:
        metrics["cost/gain_per_device_hour"] = gain
    if state.status == "completed":  # what killed workers left behind
        shutil.rmtree(state.path / WORK_DIR, ignore_errors=True)
    run_status = "FINISHED" if state.status == "completed" else "KILLED"
    ended = sum(t.status in TERMINAL for t in state.trials.values())
    tracker.end_sweep(state.parent_run_id, status=run_status, metrics=metrics, tags=tags,
                      step=ended)  # fmt: skip
    state.save()
