"""Setting a sweep up, before anything of it is written (``sweeps/driver/launch.py``'s step 1): the
prepare: section's data (``sweep data prepare`` into the sweep's directory; ``sweep validate``
runs it too), preflight (``sweeps/driver/preflight.py``), which checks everything a user can get
wrong before Ray starts or MLflow is written, and the base model's scores
(``sweeps/driver/base_scores.py``, and its proxy benchmarks); on resume, the config the sweep was
launched with, checked again, and Ray's saved experiment found."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from evals.benchmark_scores import BenchmarkScores
from sweeps.config import ConfigError, SweepConfig, load_config, resolve_path
from sweeps.console import Say
from sweeps.driver.base_scores import BaseScoring
from sweeps.driver.preflight import LaunchPlan, benchmark_mirror, preflight
from sweeps.tracking.state import RELAUNCH_CONFIG, SweepState
from sweeps.tune.options import RayOptions

if TYPE_CHECKING:
    from sweeps.prepare import PrepareResult


def set_up_launch(
    config: SweepConfig,
    *,
    config_path: Path | None,
    config_dir: Path,
    directory: Path,
    ray: RayOptions,
    console: Console,
) -> tuple[LaunchPlan, BaseScoring, BenchmarkScores | None]:
    """The prepare: section's data (when there is one), preflight and the base model's scores.
    A failure here leaves nothing behind, prepared data included."""
    say = say_on(console)
    if directory.exists():
        raise ConfigError(
            f"sweep {directory.name!r} already exists at {directory}; pick another --name"
        )
    try:
        if config.prepare is not None:
            directory.mkdir(parents=True)
            config, _ = prepare_for_sweep(
                config, config_dir=config_dir, out_dir=directory / "data", progress=say
            )
        return checked_and_scored(
            config,
            config_path=config_path,
            config_dir=config_dir,
            say=say,
            ray=ray,
            background=True,
        )
    except BaseException:
        if config.prepare is not None:
            shutil.rmtree(directory, ignore_errors=True)
        raise


def set_up_resume(
    state: SweepState, *, ray: RayOptions, console: Console
) -> tuple[LaunchPlan, BaseScoring]:
    """The config the sweep was launched with, checked again (the data may have changed), Ray's
    saved experiment found (a state file cut short by the crash set aside), base scores."""
    from sweeps import tune
    from sweeps.tracking.storage import set_aside_damaged_state

    say = say_on(console)
    path = state.path / RELAUNCH_CONFIG
    config = load_config(path)
    if not tune.can_resume(config, state.path):
        where = tune.checkpoint_root(config, state.path)
        raise ConfigError(f"sweep {state.name}: no Ray experiment state under {where}")
    for name in set_aside_damaged_state(tune.experiment_path(config, state.path)):
        say(
            f"Ray's {name} was cut short (renamed .damaged-{name}): resuming from the "
            "state saved before it"
        )
    plan, base, _ = checked_and_scored(
        config, config_path=path, config_dir=path.parent, say=say, ray=ray, background=False
    )
    base.recorded = bool(state.base_metrics)  # a launch stopped before it recorded them: now
    return plan, base


def checked_and_scored(
    config: SweepConfig,
    *,
    config_path: Path | None,
    config_dir: Path,
    say: Say,
    ray: RayOptions,
    background: bool,
) -> tuple[LaunchPlan, BaseScoring, BenchmarkScores | None]:
    """Preflight, the base model's held-out scores (cached, else computed beside the trials when
    ``background``) and its proxy benchmark scores (cached)."""
    plan = preflight(
        config,
        config_path=config_path,
        config_dir=config_dir,
        progress=say,
        address=ray.address,
        logical_gpus=ray.num_gpus,
    )
    plan, base_bench = _base_benchmarks(plan, say=say)  # before the thread: all the cores
    # beside the trials on CPU only: on a GPU it would share the trials' memory
    base = BaseScoring(plan, say=say, background=background and plan.spec.device == "cpu")
    return plan, base, base_bench


def _base_benchmarks(plan: LaunchPlan, *, say: Say) -> tuple[LaunchPlan, BenchmarkScores | None]:
    """The base model's proxy benchmark scores, put into the plan every trial receives."""
    if plan.spec.benchmarks is None or not plan.spec.benchmarks.tasks:
        return plan, None
    from sweeps.driver.benchmarking import score_base_proxy

    benchmarks, scores = score_base_proxy(plan.spec, say=say)
    return replace(plan, spec=plan.spec.model_copy(update={"benchmarks": benchmarks})), scores


# --------------------------------------------------------------------------- the prepare: section
def prepare_for_sweep(
    config: SweepConfig, *, config_dir: Path, out_dir: Path, progress: Say
) -> tuple[SweepConfig, PrepareResult]:
    """Run ``sweep data prepare`` on data.train into ``out_dir``; the config, pointed at the
    prepared train and held-out files, and what the preparation did. The prepare: section is
    the steps of PrepareOptions as they are; the rest comes from data:, benchmarks: and the
    search space (rows are measured against its largest sequence_len)."""
    from evals.benchmark_sources import BenchmarkError
    from sweeps.prepare import PrepareOptions, prepare_data
    from sweeps.search.space import candidate_values

    steps, data = config.prepare, config.data
    assert steps is not None
    try:
        mirror = benchmark_mirror(config, config_dir=config_dir)
    except BenchmarkError as exc:
        raise ConfigError(f"benchmarks.mirror: {exc}") from None
    options = PrepareOptions(
        **steps.model_dump(),
        **data.model_dump(include={"format", "columns", "template", "instruction", "label_field"}),
        inputs=(resolve_path(data.train, config_dir=config_dir),),
        out_dir=out_dir,
        heldout=resolve_path(data.heldout, config_dir=config_dir) if data.heldout else None,
        heldout_fraction=data.val_set_size,
        seed=data.split_seed,
        benchmarks=tuple(config.benchmarks.tasks) if mirror else (),
        mirror=mirror,
        max_seq_len=max(int(v) for v in candidate_values(config, "sequence_len")),
        model=config.base_model,
    )
    progress(f"Preparing {options.inputs[0]} (sweep data prepare) ...")
    prepared = prepare_data(options, progress=progress)
    update: dict[str, object] = {
        "train": str(prepared.out_dir / "train.jsonl"),
        "format": "auto",
        "columns": {},
        "instruction": None,
        "label_field": None,
        "heldout": str(prepared.out_dir / "heldout.jsonl"),
    }
    return config.model_copy(update={"data": data.model_copy(update=update)}), prepared


def say_on(console: Console) -> Say:
    return lambda text: console.print(text, highlight=False)
