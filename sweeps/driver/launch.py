"""The sweep's driver, as a recipe: launch and resume share one lifecycle.

1. **set up** (``sweeps/driver/set_up.py``): the prepare: section's data, then preflight
   (``sweeps/driver/preflight.py``) checks everything a user can get wrong before Ray starts or
   MLflow is written, so a bad input leaves no half-written sweep; then the base model's scores
   (``sweeps/driver/base_scores.py``);
2. **create** the sweep (directory, state.json, MLflow parent run), or **reopen** it on resume;
3. **run** the trials (``sweeps/tune/``, Ray Tune), recording every event through the recorder;
4. **conclude**: base scores, the finalists and the guard, the pictures; and **finish**: the
   summary on the parent run (``sweeps/driver/parent_run.py``), whatever happened before.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from evals.benchmark_scores import BenchmarkScores
from evals.metric_keys import PROXY
from sweeps.config import ConfigError, SweepConfig, load_config
from sweeps.driver.base_scores import BaseScoring
from sweeps.driver.parent_run import (
    data_paths,
    end_parent_run,
    log_sweep_pictures,
    sweep_artifacts,
    sweep_tags,
    view_columns,
    write_sweep_files,
)
from sweeps.driver.preflight import LaunchPlan, coerce_config
from sweeps.driver.set_up import say_on, set_up_launch, set_up_resume
from sweeps.driver.warm_start import resolve_prior, seed_study
from sweeps.search.pareto import describe_goals
from sweeps.tracking.state import (
    RELAUNCH_CONFIG,
    TERMINAL,
    SweepState,
    study_storage,
    sweep_directory,
)
from sweeps.tune.options import RayOptions

if TYPE_CHECKING:
    from sweeps.tracking.mlflow_facade import SweepTracker

__all__ = [
    "RELAUNCH_CONFIG",
    "launch_sweep",
    "launch_with",
    "rerun_failed",
    "resume_sweep",
]

DRIVER_LOCK = "driver.lock"  # held by the one driver (launch or resume) running a sweep


@dataclass
class Driver:
    """One driver's hold on a sweep: what every step after set-up works on."""

    plan: LaunchPlan
    state: SweepState
    tracker: SweepTracker
    base: BaseScoring
    console: Console

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)


# --------------------------------------------------------------------------- entries
def launch_sweep(
    config: str | Path | SweepConfig | dict[str, object],
    *,
    name: str | None = None,
    state_dir: str | Path | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    console: Console | None = None,
) -> SweepState:
    """Validate, score the base model, run the sweep and return its final state."""
    ray = RayOptions(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    console = console or Console()
    return launch_with(config, ray=ray, name=name, state_dir=state_dir, console=console)


def launch_with(
    config: str | Path | SweepConfig | dict[str, object],
    *,
    ray: RayOptions,
    name: str | None,
    state_dir: str | Path | None,
    console: Console,
) -> SweepState:
    """:func:`launch_sweep` with where Ray runs as one object (``sweep launch``'s flags)."""
    loaded, config_path, config_dir = coerce_config(config)
    directory = sweep_directory(
        Path(state_dir or loaded.tracking.state_dir), name or new_sweep_name(loaded)
    )
    loaded = resolve_prior(loaded, state_dir=directory.parent)
    plan, base, base_bench = set_up_launch(
        loaded,
        config_path=config_path,
        config_dir=config_dir,
        directory=directory,
        ray=ray,
        console=console,
    )
    with ray_running(ray):  # Ray's processes start while the parent run is made
        driver = create_sweep(plan, base, base_bench, directory=directory, console=console)
        with driver_lock(driver.state.path):
            run_to_the_end(driver, resume=False)
    return driver.state


def resume_sweep(
    sweep: str, *, state_dir: str | Path, ray: RayOptions, console: Console | None = None
) -> SweepState:
    """Continue a sweep whose driver stopped: finished trials stay finished, unfinished ones
    restart from their last checkpoint, and the MLflow runs and the Optuna study carry on."""
    console = console or Console()
    state = existing_sweep(sweep, state_dir=state_dir)
    with driver_lock(state.path):
        if state.status == "completed":
            say_on(console)(f"Sweep {state.name} is already completed: nothing to resume.")
            return state
        plan, base = set_up_resume(state, ray=ray, console=console)
        with ray_running(ray):
            driver = reopen_sweep(state, plan, base, console=console)
            run_to_the_end(driver, resume=True)
    return state


def rerun_failed(
    sweep: str, *, state_dir: str | Path, ray: RayOptions, console: Console | None = None
) -> SweepState:
    """Run a finished sweep's failed trials again, in the same sweep and study
    (``sweeps/driver/rerun.py``); the others stay as they ended."""
    from sweeps.driver.rerun import check_rerunnable, failed_trials, prepare_rerun

    console = console or Console()
    state = existing_sweep(sweep, state_dir=state_dir)
    with driver_lock(state.path):
        if state.status != "completed":
            raise ConfigError(
                f"sweep {state.name} is {state.status}, not finished: continue it "
                f"first (sweep resume {state.name}); rerun --failed re-runs a "
                "finished sweep's failed trials"
            )
        failed = failed_trials(state)
        if not failed:
            say_on(console)(f"Sweep {state.name} has no failed trial: nothing to re-run.")
            return state
        storage = study_storage(load_config(state.path / RELAUNCH_CONFIG), state.path)
        check_rerunnable(state, storage=storage, trials=failed)
        plan, base = set_up_resume(state, ray=ray, console=console)
        with ray_running(ray):
            driver = reopen_sweep(state, plan, base, console=console)
            rerun = prepare_rerun(
                state, driver.tracker, trials=failed, say=driver.say, storage=storage
            )
            run_to_the_end(driver, resume=True, rerun=rerun)
    return state


def existing_sweep(sweep: str, *, state_dir: str | Path) -> SweepState:
    """A sweep's state by name or directory; one line when there is none."""
    from sweeps.tracking.state import load_state

    try:
        return load_state(sweep, state_dir=Path(state_dir))
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None


def new_sweep_name(config: SweepConfig) -> str:
    return f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


# --------------------------------------------------------------------------- 2. create / reopen
def create_sweep(
    plan: LaunchPlan,
    base: BaseScoring,
    base_bench: BenchmarkScores | None,
    *,
    directory: Path,
    console: Console,
) -> Driver:
    """The sweep's directory, state.json and MLflow parent run (after preflight passed)."""
    from sweeps.tracking.mlflow_facade import SweepTracker
    from trainers.models import model_digest

    config = plan.config
    directory.mkdir(parents=True, exist_ok=config.prepare is not None)  # prepare made it
    resolved = write_sweep_files(plan, directory)
    tracker = SweepTracker(config.tracking.mlflow_uri, config.tracking.experiment or config.name)
    parent = tracker.start_sweep(
        directory.name, config=resolved, tags=sweep_tags(plan), artifacts=sweep_artifacts(plan)
    )
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
        also=[[g.metric, g.mode] for g in plan.also],
        pick=config.objective.pick,
    )
    _describe_parent_run(plan, state, tracker, base_bench=base_bench)
    state.save()
    driver = Driver(plan, state, tracker, base, console)
    driver.say(f"Sweep {state.name}: {plan.num_samples} trials, {describe_goals(plan.goals)}")
    base.record(state, tracker)
    return driver


def _describe_parent_run(
    plan: LaunchPlan,
    state: SweepState,
    tracker: SweepTracker,
    *,
    base_bench: BenchmarkScores | None,
) -> None:
    """The base model's digest, the saved view, the datasets, the prepared data's report and the
    base model's proxy benchmark scores, on the new parent run."""
    parent = state.parent_run_id
    tracker.set_tags(parent, {"base_model.sha256": state.base_model_digest})
    tracker.set_sweep_view(
        state.name,
        sort_metric=plan.objective_metric,
        ascending=plan.objective_mode == "min",
        columns=view_columns(plan),
    )
    tracker.log_datasets(
        parent,
        {
            role: (str(path), plan.digests[role], plan.rows[role])
            for role, path in data_paths(plan).items()
        },
    )
    if plan.config.prepare is not None:
        tracker.log_artifact_dirs(parent, {"data_prep": state.path / "data"})
    if base_bench is not None:
        from sweeps.driver.benchmarking import log_base_scores

        log_base_scores(tracker, parent, base_bench, phase=PROXY)


def reopen_sweep(
    state: SweepState, plan: LaunchPlan, base: BaseScoring, *, console: Console
) -> Driver:
    """The sweep's parent run reopened, and what the last driver logged caught up with."""
    from sweeps.tracking.mlflow_facade import SweepTracker
    from sweeps.tracking.recorder import catch_up_logged_steps

    config = plan.config
    tracker = SweepTracker(state.mlflow_uri, config.tracking.experiment or config.name)
    tracker.reopen(state.parent_run_id)
    driver = Driver(plan, state, tracker, base, console)
    ended = sum(t.status in TERMINAL for t in state.trials.values())
    failed = sum(t.status == "failed" for t in state.trials.values())
    doing = (
        f"Re-running the {failed} failed trial{'' if failed == 1 else 's'} of"
        if state.status == "completed"
        else "Resuming"
    )
    driver.say(f"{doing} sweep {state.name}: {ended} of {plan.num_samples} trials ended.")
    catch_up_logged_steps(state, tracker)
    return driver


# --------------------------------------------------------------------------- 3-4. run, finish
def run_to_the_end(driver: Driver, *, resume: bool, rerun: Sequence[str] = ()) -> None:
    """Run the trials (or re-run ``rerun``, failed ones), conclude, and close the parent run
    whatever happens (interrupted unless every trial ended)."""
    driver.state.status = "interrupted"
    try:
        done = run_trials(driver, resume=resume, rerun=rerun)
        conclude(driver, done=done)
    finally:
        end_parent_run(driver.state, driver.tracker)


def run_trials(driver: Driver, *, resume: bool, rerun: Sequence[str] = ()) -> bool:
    """Ray Tune from the start (or from where it stopped) to the end; whether every planned
    trial ended (not after Ctrl-C, which makes Tune return early)."""
    from sweeps import tune
    from sweeps.driver.display import LiveTable
    from sweeps.driver.rerun import study_numbers
    from sweeps.tracking.recorder import SweepRecorder, forget_lost_trials

    plan, state, tracker = driver.plan, driver.state, driver.tracker
    storage = study_storage(plan.config, state.path)
    seed_study(
        plan.config, study_name=state.name, storage=storage, goals=plan.goals, say=driver.say
    )
    with LiveTable(driver.console) as live:
        recorder = SweepRecorder(
            state,
            tracker,
            live,
            logged_generations=plan.config.evaluation.logged_generations,
            remove_finished_checkpoints=(plan.config.recovery.removes_finished_checkpoints),
            study_number=study_numbers(storage, state.name),
            poll=lambda: driver.base.record(state, tracker),
        )
        if rerun:
            grid = tune.rerun_tuner(
                plan.config,
                spec=plan.spec,
                recorder=recorder,
                sweep_dir=state.path,
                trial_ids=rerun,
            )
        elif resume:
            grid = tune.resume_tuner(
                plan.config, spec=plan.spec, recorder=recorder, sweep_dir=state.path
            )
        else:
            grid = tune.run_tuner(
                plan.config,
                spec=plan.spec,
                recorder=recorder,
                sweep_dir=state.path,
                goals=plan.goals,
                max_rungs=plan.max_rungs,
                num_samples=plan.num_samples,
            )
    if tune.every_trial_ended(grid):
        forget_lost_trials(state, tracker)
    ended = [t for t in state.trials.values() if t.status != "running"]
    return len(ended) == len(state.trials) >= plan.num_samples


def conclude(driver: Driver, *, done: bool) -> None:
    """The base model's scores (the summary reads the trials against them); when every trial
    ended, the finalists' full benchmarks, the guard and the study's pictures."""
    state, tracker, base = driver.state, driver.tracker, driver.base
    if done or base.ready():
        base.join()
        base.record(state, tracker)
    if done:
        from sweeps.driver.benchmarking import guard_and_score_finalists

        guard_and_score_finalists(state, tracker, spec=driver.plan.spec, say=driver.say)
        log_sweep_pictures(
            state,
            tracker,
            storage_url=study_storage(driver.plan.config, state.path),
            say=driver.say,
        )
    state.status = "completed" if done else "interrupted"


@contextlib.contextmanager
def ray_running(ray: RayOptions) -> Iterator[None]:
    """Ray started (or joined) for the block, and stopped after it when this call started it."""
    from sweeps import tune

    started = tune.start_ray(address=ray.address, num_cpus=ray.num_cpus, num_gpus=ray.num_gpus)
    try:
        yield
    finally:
        if started:
            tune.stop_ray()


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
