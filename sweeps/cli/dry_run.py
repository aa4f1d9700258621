"""``sweep validate``: a dry run of ``sweep launch``, and the plan with its time estimate.

It runs every check launch runs (sweeps/driver/preflight.py: the data rows, contamination, the
objective, benchmarks, resources, the model, target modules and truncation; a ``prepare:``
section prepares into a scratch directory), then times a short trial on the real model
(trainers/timing.py) and scales it to the sweep (sweeps/driver/estimate.py). It starts no Ray, trains
no adapter, and writes nothing to MLflow or the sweeps directory.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sweeps.console import Say
from sweeps.driver.estimate import DriverDocuments, SweepEstimate, estimate_sweep
from sweeps.driver.preflight import LaunchPlan, available_cpus, coerce_config, preflight
from trainers.timing import TrialTiming


@dataclass(frozen=True)
class DryRun:
    plan: LaunchPlan
    timing: TrialTiming
    estimate: SweepEstimate


def dry_run(
    config: str | Path, *, say: Say = print, num_gpus: int | None = None, cpus: int | None = None
) -> DryRun:
    """Every launch check, then a timed short trial and the sweep's estimate."""
    from sweeps.driver.set_up import prepare_for_sweep

    loaded, config_path, config_dir = coerce_config(config)
    with tempfile.TemporaryDirectory(prefix="lora-sweep-validate-") as scratch:
        if loaded.prepare is not None:
            loaded, _ = prepare_for_sweep(
                loaded, config_dir=config_dir, out_dir=Path(scratch) / "data", progress=say
            )
        plan = preflight(
            loaded,
            config_path=config_path,
            config_dir=config_dir,
            progress=say,
            logical_gpus=num_gpus,
        )
        timing = timed_trial(plan, say=say)
    estimate = estimate_sweep(
        plan.config,
        timing,
        num_samples=plan.num_samples,
        token_lengths=list(plan.train_token_lengths),
        cpus=cpus or available_cpus(),
        gpus=num_gpus or visible_gpus(),
        base_cached=base_scores_cached(plan),
        driver_documents=driver_benchmark_documents(plan),
    )
    return DryRun(plan, timing, estimate)


def driver_benchmark_documents(plan: LaunchPlan) -> DriverDocuments:
    """The benchmark documents the driver scores outside the trials: each finalist's (at least
    each task's first look, at most all its looks), and the base model's screening and finalist
    documents where they are not cached yet (all of them: later sweeps' looks read them)."""
    bench = plan.spec.benchmarks
    if bench is None or not bench.tasks:
        return DriverDocuments()
    from evals.benchmark_plan import FULL, PROXY, uncached_tasks
    from evals.power import BINARY, PLANNING_CHURN, documents_needed
    from evals.sequential import finalist_looks
    from trainers.models import model_identity

    most = documents_needed(
        plan.config.benchmarks.finalist_drop, kind=BINARY, spread=PLANNING_CHURN
    )
    final = {
        task: sum(len(ids) for ids in bench.finalist_documents[task].values())
        if task in bench.finalist_documents
        else bench.set_sizes.get(task, most)
        for task in bench.tasks
    }
    first = {task: finalist_looks(final[task]).sizes[0] for task in bench.tasks}
    proxy = {task: sum(len(ids) for ids in bench.proxy[task].values()) for task in bench.tasks}
    model = model_identity(Path(plan.spec.model_path))
    base = sum(proxy[t] for t in uncached_tasks(bench, phase=PROXY, model_id=model))
    if bench.finalists:
        base += sum(final[t] for t in uncached_tasks(bench, phase=FULL, model_id=model))
    return DriverDocuments(
        least=bench.finalists * sum(first.values()) + base,
        most=bench.finalists * sum(final.values()) + base,
    )


def timed_trial(plan: LaunchPlan, *, say: Say) -> TrialTiming:
    from sweeps.search.space import representative_hparams
    from trainers.timing import time_trial

    hparams = representative_hparams(plan.config)
    say(
        f"Timing a short trial on {plan.config.base_model} (lora_r {hparams.lora_r}, "
        f"sequence_len {hparams.sequence_len}): setup, 4 steps, one rung"
        f"{', the proxy benchmarks' if plan.spec.benchmarks and plan.spec.benchmarks.tasks else ''}"
        " ..."
    )
    timing = time_trial(plan.spec, hparams)
    say(
        f"  worker start {timing.worker_start:.1f} s, setup {timing.setup:.1f} s, "
        f"{timing.step:.2f} s a step ({timing.tokens_per_step:.0f} tokens), "
        f"{timing.rung:.1f} s a rung (held-out evaluation and checkpoint)"
        + (
            f", {timing.benchmark:.1f} s of proxy benchmarks at a trial's end"
            if timing.benchmark
            else ""
        )
    )
    return timing


def base_scores_cached(plan: LaunchPlan) -> bool:
    from sweeps.driver.base_scores import cache_file

    return cache_file(plan).is_file()


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
