"""Preflight: everything a user can get wrong, checked before Ray starts or MLflow is written.

The config's rules (sweeps/config/) come first; then every data row, contamination, the
objective, benchmarks, resources and GPU memory, the model (remote code, target modules) and
truncation (the data's checks: ``preflight_data.py``; the model's: ``preflight_model.py``).
``preflight`` returns a LaunchPlan: the config with all a trial needs resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.benchmark_plan import BenchmarkPlan
from evals.metric_keys import (
    BENCHMARK_DELTA,
    COMPOSITE,
    HELDOUT_EXACT_MATCH,
    HELDOUT_TASK_METRIC,
    LOWER_IS_BETTER,
    SECOND_OBJECTIVES,
    heldout,
)
from sweeps.config import ConfigError, SweepConfig, load_config, resolve_path
from sweeps.console import Say
from sweeps.driver.preflight_data import check_data
from sweeps.driver.preflight_model import check_model, check_truncation
from sweeps.search.pareto import Goal
from sweeps.search.samplers import sampler_note
from sweeps.search.space import max_epochs
from trainers.data import Example, file_digest
from trainers.data_readers import DataError
from trainers.spec import TrialSpec

if TYPE_CHECKING:
    from trainers.models import ResolvedModel


@dataclass(frozen=True)
class LaunchPlan:
    """A config that passed preflight, with everything resolved that trials need."""

    config: SweepConfig
    config_path: Path | None
    spec: TrialSpec
    task_metric: str
    objective_metric: str
    objective_mode: str
    digests: dict[str, str]
    rows: dict[str, int]
    model_kind: str
    max_rungs: int
    num_samples: int
    train_token_lengths: tuple[int, ...] = ()  # each training row's tokens under the template
    also: tuple[Goal, ...] = ()  # a multi-objective sweep's other objectives (objective.also)

    @property
    def goals(self) -> tuple[Goal, ...]:
        """Every objective, the first one first (what the table sorts by)."""
        return (Goal.of(self.objective_metric, self.objective_mode), *self.also)


def coerce_config(
    config: str | Path | SweepConfig | dict[str, Any],
) -> tuple[SweepConfig, Path | None, Path]:
    """A config object, with its source file (if any) and the directory relative paths start from."""
    from sweeps.config import config_from_dict

    if isinstance(config, SweepConfig):
        return config, None, Path.cwd()
    if isinstance(config, dict):
        return config_from_dict(config), None, Path.cwd()
    path = Path(config)
    return load_config(path), path, path.resolve().parent


# --------------------------------------------------------------------------- preflight
def check_contamination(
    config: SweepConfig,
    examples: dict[str, list[Example]],
    *,
    config_dir: Path,
    source: str,
    progress: Say,
) -> None:
    """Refuse training rows that share a 13-gram with the held-out rows or with the listed
    benchmarks' evaluation files (when a mirror has them), unless data.allow_contaminated."""
    from evals.benchmark_sources import BenchmarkError
    from sweeps.prepare import find_contamination

    try:
        mirror = benchmark_mirror(config, config_dir=config_dir)
    except BenchmarkError:
        mirror = None  # check_benchmarks names the problem
    found = find_contamination(
        examples["train"], examples["heldout"], tasks=tuple(config.benchmarks.tasks), mirror=mirror
    )
    if not found:
        return
    record, why = found[0]
    message = (
        f"{len(found)} training rows share a 13-gram with held-out or benchmark items "
        f"(first: train row {record.row} {why})"
    )
    if config.data.allow_contaminated:
        progress(f"Warning: {message}; launching anyway (data.allow_contaminated: true)")
        return
    raise DataError(
        f"{source}: data.train: {message}; remove them (`sweep data prepare`, or a prepare: "
        "section) or set data.allow_contaminated: true"
    )


def resolve_objective(config: SweepConfig, task_metric: str, *, source: str) -> tuple[str, str]:
    objective = config.objective
    metric = measured_metric(objective.metric, task_metric, where=f"{source}: objective.metric")
    mode = objective.mode or ("min" if metric in LOWER_IS_BETTER else "max")
    return metric, mode


def measured_metric(metric: str, task_metric: str, *, where: str) -> str:
    """A held-out objective as this data measures it (``heldout/task_metric`` named for the task
    metric); refused when the data does not measure it."""
    resolved = heldout(task_metric) if metric == HELDOUT_TASK_METRIC else metric
    allowed = {*LOWER_IS_BETTER, heldout(task_metric), HELDOUT_EXACT_MATCH}
    if task_metric == "none":
        allowed = set(LOWER_IS_BETTER)
    if resolved not in allowed:
        raise ConfigError(
            f"{where}: {metric!r} is not measured for this data (task metric {task_metric}); "
            f"use one of {sorted(allowed)}"
        )
    return resolved


def resolve_also(
    config: SweepConfig,
    task_metric: str,
    *,
    primary: str,
    benchmarks: BenchmarkPlan | None,
    source: str,
) -> tuple[Goal, ...]:
    """objective.also, each metric resolved as objective.metric is and checked to be measured:
    a held-out one for this data, the benchmark delta only with benchmarks to score."""
    goals: list[Goal] = []
    for index, term in enumerate(config.objective.also):
        where = f"{source}: objective.also[{index}]"
        metric = term.metric
        if metric == BENCHMARK_DELTA and (benchmarks is None or not benchmarks.tasks):
            raise ConfigError(
                f"{where}: {metric} needs benchmarks to score; list them in "
                "benchmarks.tasks, or drop this objective"
            )
        if metric not in SECOND_OBJECTIVES:  # a held-out metric
            metric = measured_metric(metric, task_metric, where=where)
        if metric == primary or metric in (g.metric for g in goals):
            raise ConfigError(f"{where}: {metric} is already an objective; list it once")
        goals.append(Goal(metric, term.resolved_mode))
    return tuple(goals)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_resources(
    config: SweepConfig,
    *,
    source: str,
    address: str | None,
    logical_gpus: int | None = None,
    progress: Say = print,
) -> str:
    """The trials' device. GPU trials need a visible CUDA GPU here (a cluster's are Ray's to
    check), unless --num-gpus declares logical GPUs: Ray then packs and assigns them, and the
    trials train on CPU. QLoRA or a paged optimizer needs bitsandbytes (the cuda extra)."""
    device = "cuda" if config.resources.gpu > 0 else "cpu"
    if config.resources.gpu > 0 and address is None:
        import torch

        if not torch.cuda.is_available() and not logical_gpus:
            raise ConfigError(
                f"{source}: resources.gpu: {config.resources.gpu} GPU per trial, but no "
                "CUDA GPU is visible; set resources.gpu: 0 to train on CPU"
            )
        if not torch.cuda.is_available():
            progress(
                f"No CUDA here: Ray schedules the trials on {logical_gpus} logical GPUs "
                f"({config.resources.gpu} each), and they train on CPU."
            )
            device = "cpu"
    _check_bitsandbytes(config, source=source)
    return device


def _check_bitsandbytes(config: SweepConfig, *, source: str) -> None:
    training = config.training
    if training.adapter == "qlora" or training.optimizer.startswith("paged_"):
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(
                f"{source}: training.adapter: {training.adapter} / optimizer "
                f"{training.optimizer} needs bitsandbytes: pip install -e '.[cuda]'"
            )


def check_judge(
    config: SweepConfig, *, config_dir: Path, source: str, progress: Say
) -> SweepConfig:
    """The judge's rubric file reads (its path made absolute, as the sweep's record keeps it),
    and a gate that requires the judge has one, or is told the flags will have to name it."""
    from evals.judge import RubricError, load_rubric

    judge = config.judge
    if judge is not None and judge.rubric:
        path = resolve_path(judge.rubric, config_dir=config_dir)
        try:
            load_rubric(path)
        except RubricError as exc:
            raise ConfigError(f"{source}: judge.rubric: {exc}") from None
        judge = judge.model_copy(update={"rubric": str(path)})
        config = config.model_copy(update={"judge": judge})
    if "judge" in config.promote.require and judge is None:
        progress(
            "Note: promote.require lists judge but there is no judge: section; sweep "
            "promote will need --judge-model (and --judge-url for an endpoint)"
        )
    return config


def check_study_storage(config: SweepConfig, *, source: str) -> None:
    """A search.storage database Optuna cannot use (driver missing, unreachable, refused) is
    refused before Ray starts."""
    url = config.search.storage
    if url is None:
        return
    import optuna

    from sweeps.tracking.provenance import hide_uri_password

    try:
        optuna.storages.RDBStorage(url).get_all_studies()
    except ModuleNotFoundError as exc:
        problem = f"{exc.name} is not installed (pip install -e '.[cluster]')"
    except Exception as exc:  # SQLAlchemy's connection errors: the first line says why
        problem = str(exc).splitlines()[0][:300]
    else:
        return
    raise ConfigError(f"{source}: search.storage: {hide_uri_password(url)}: {problem}")


def check_warm_start(
    config: SweepConfig, *, goals: tuple[Goal, ...], source: str, progress: Say
) -> None:
    """search.warm_start names a sweep with the same objective; say what it will carry over."""
    if config.search.warm_start is None:
        return
    from sweeps.driver.warm_start import carried_trials, resolve_prior

    prior = resolve_prior(config, state_dir=Path(config.tracking.state_dir)).search.warm_start
    try:
        carried = carried_trials(config, prior_dir=Path(str(prior)), goals=goals)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    progress(carried.describe())


def benchmark_mirror(config: SweepConfig, *, config_dir: Path) -> Path | None:
    """The benchmarks' local mirror (benchmarks.mirror, else $LORA_SWEEP_BENCHMARK_MIRROR), or
    None when there is none or no benchmark is listed; a mirror that is not a directory raises
    BenchmarkError."""
    if not config.benchmarks.tasks:
        return None
    from evals.benchmark_sources import mirror_directory

    configured = config.benchmarks.mirror
    return mirror_directory(resolve_path(configured, config_dir=config_dir) if configured else None)


def check_benchmarks(
    config: SweepConfig,
    *,
    config_dir: Path,
    source: str,
    heldout_metric: str,
    mode: str,
    progress: Say,
) -> BenchmarkPlan | None:
    """Task names and data for every listed benchmark, before any compute (None: no benchmarks)."""
    if not config.benchmarks.tasks:
        return None
    from evals.benchmark_plan import plan_benchmarks
    from evals.benchmark_sources import BenchmarkError
    from trainers.models import cache_root

    try:
        mirror = benchmark_mirror(config, config_dir=config_dir)
        plan = plan_benchmarks(
            config.benchmarks,
            config.objective,
            mirror=mirror,
            cache=cache_root(),
            progress=progress,
        )
    except BenchmarkError as exc:
        raise BenchmarkError(f"{source}: benchmarks: {exc}") from None
    return replace(plan, heldout_metric=heldout_metric, mode=mode) if plan else None


def preflight(
    config: SweepConfig,
    *,
    config_path: Path | None,
    config_dir: Path,
    progress: Say = print,
    address: str | None = None,
    logical_gpus: int | None = None,
) -> LaunchPlan:
    """Everything checkable before compute, in this order: every data row, contamination, the
    objective, benchmarks, the study's storage, resources, the model (remote code, target
    modules, memory) and truncation."""
    source = str(config_path or "<config>")
    paths, examples, task_metric = check_data(
        config, config_dir=config_dir, source=source, progress=progress
    )
    check_contamination(config, examples, config_dir=config_dir, source=source, progress=progress)
    metric, mode = resolve_objective(config, task_metric, source=source)
    benchmarks = check_benchmarks(
        config,
        config_dir=config_dir,
        source=source,
        heldout_metric=metric,
        mode=mode,
        progress=progress,
    )
    also = resolve_also(config, task_metric, primary=metric, benchmarks=benchmarks, source=source)
    if benchmarks is not None and benchmarks.weights:
        metric = COMPOSITE
    check_study_storage(config, source=source)
    config = check_judge(config, config_dir=config_dir, source=source, progress=progress)
    goals = (Goal.of(metric, mode), *also)
    check_warm_start(config, goals=goals, source=source, progress=progress)
    note = sampler_note(config)
    if note:
        progress(f"Note: {note}")
    device = check_resources(
        config, source=source, address=address, logical_gpus=logical_gpus, progress=progress
    )
    config, model = check_model(config, source=source, progress=progress)
    spec = trial_spec(
        config, model, paths=paths, task_metric=task_metric, device=device, benchmarks=benchmarks
    )
    lengths = check_truncation(config, spec, examples["train"], source=source, progress=progress)
    return LaunchPlan(
        config,
        config_path,
        spec,
        task_metric,
        metric,
        mode,
        digests={name: file_digest(path) for name, path in paths.items()},
        rows={name: len(rows) for name, rows in examples.items()},
        model_kind=model.kind,
        max_rungs=max_epochs(config.search_space) * config.training.evals_per_epoch,
        num_samples=planned_trials(config),
        train_token_lengths=tuple(lengths),
        also=also,
    )


def trial_spec(
    config: SweepConfig,
    model: ResolvedModel,
    *,
    paths: dict[str, Path],
    task_metric: str,
    device: str,
    benchmarks: BenchmarkPlan | None,
) -> TrialSpec:
    """What every trial receives: the checked config with its data files and task metric
    resolved, the model's local directory and the trials' device."""
    resolved = {
        "train": str(paths["train"]),
        "heldout": str(paths["heldout"]) if "heldout" in paths else None,
        "task_metric": task_metric if task_metric != "none" else "exact_match",
    }
    return TrialSpec(
        model_path=str(model.path),
        data=config.data.model_copy(update=resolved),
        training=config.training,
        evaluation=config.evaluation,
        trust_remote_code=config.trust_remote_code,
        device=device,
        cpus=config.resources.cpu,
        gpus=config.resources.gpu,
        benchmarks=benchmarks,
    )


def planned_trials(config: SweepConfig) -> int:
    """num_samples, or fewer when a grid has fewer points."""
    if config.search.algorithm == "grid":
        from sweeps.search.space import grid_size

        return min(config.search.num_samples, grid_size(config))
    return config.search.num_samples
