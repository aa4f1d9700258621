"""Benchmarks in a sweep: which tasks run, on which documents, and what the base model scored.

The plan is made once, at launch, before any training: every task's data is loaded (from the
Hub or the local mirror) and fingerprinted, so a benchmark that cannot be had fails the launch
up front, or, for ``optional: true``, is skipped with its reason. Each trial's proxy score uses a
fixed, seeded subset of documents (stratified by subtask for groups such as MMLU); finalists get
the full sets. The base model's scores are cached across sweeps per (model, task, few-shot,
documents, data digest).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from evals.benchmark_scores import BenchmarkScores, pool_group, proxy_samples
from evals.benchmark_sources import known_offline_skips
from evals.benchmarks import (
    check_data,
    check_tasks,
    narrow_index_dirs,
    narrow_task_manager,
    score_benchmarks,
    task_manager,
)
from evals.metric_keys import (
    BENCHMARK_DELTA,
    COMPOSITE,
    DELTA,
    DELTA_CI_HIGH,
    DELTA_CI_LOW,
    DELTA_P_VALUE,
    DETECTABLE_DROP,
    DOCUMENTS,
    FULL,
    PROXY,
    SECONDS,
    bench_metrics,
    bench_name,
    composite_name,
    phase_seconds,
)
from evals.objective import composite, deltas, primary_metric
from evals.paired import PairedComparison, compare_paired
from evals.power import BINARY, PLANNING_CHURN, documents_needed, look_alpha, resolution_of
from evals.scoring_dtype import cpu_has_bf16, scored_in, scoring_dtype

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from evals.config import BenchmarksConfig, Objective

    LoadModel = Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]

SCREENING_LOOKS = 2  # a guarded task's screening: half its documents, then the rest

__all__ = [
    "COMPOSITE",
    "FULL",
    "PROXY",
    "BenchmarkPlan",
    "base_with",
    "cached_base_scores",
    "item_scores",
    "phase_metrics",
    "plan_benchmarks",
    "primary_scores",
    "score_plan",
    "write_samples",
]


@dataclass(frozen=True)
class BenchmarkPlan:
    """Plain data (it travels to every trial): what to score and what to compare against."""

    tasks: list[str]
    mirror: str | None
    cache: str
    num_fewshot: int | None
    batch_size: int
    proxy: dict[str, dict[str, list[int]]]  # task -> leaf task -> document indices
    digests: dict[str, str]
    metric_overrides: dict[str, str]
    weights: dict[str, float]
    guard: dict[str, float]
    finalists: int
    skipped: dict[str, str] = field(default_factory=dict)
    share_prefix: bool = True
    heldout_metric: str = ""
    mode: str = "max"
    base: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> task -> score
    # phase -> task -> "<leaf task>/<doc id>" -> the base model's primary metric on that document
    base_items: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    task_dirs: list[str] | None = None  # the index a trial needs; None: lm-eval's whole index
    dtype: str = "auto"  # what benchmarks are scored in (evals.scoring_dtype.scoring_dtype)
    # the finalists' documents, for tasks whose full set is larger than a finalist needs
    finalist_documents: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # a guarded task's screening stops early once it rules out a drop this large (None: no looks)
    screen_drop: float | None = None
    set_sizes: dict[str, int] = field(default_factory=dict)  # task -> documents in its full set

    def documents(self, task: str, *, phase: str) -> dict[str, list[int]] | None:
        """The documents ``task`` is scored on in ``phase`` (None: its full set)."""
        return self.proxy[task] if phase == PROXY else self.finalist_documents.get(task)

    def manager(self) -> object:
        """lm-eval's task index for the plan's tasks (opaque here: lm-eval reads it)."""
        if self.task_dirs is not None:
            return narrow_task_manager(self.task_dirs)
        mirror = Path(self.mirror) if self.mirror else None
        return task_manager(mirror=mirror, include_path=None, cache=Path(self.cache))

    def describe(self) -> dict[str, object]:
        """What MLflow records about the plan (the proxy documents included)."""
        return {
            "tasks": self.tasks,
            "skipped": self.skipped,
            "mirror": self.mirror or "hub",
            "num_fewshot": self.num_fewshot,
            "batch_size": self.batch_size,
            "digests": self.digests,
            "weights": self.weights,
            "guard": self.guard,
            "finalists": self.finalists,
            "share_prefix": self.share_prefix,
            "proxy_documents": self.proxy,
            "task_dirs": self.task_dirs,
            "finalist_documents": self.finalist_documents,
            "screen_drop": self.screen_drop,
            "dtype": self.dtype,
        }


def plan_benchmarks(
    config: BenchmarksConfig,
    objective: Objective,
    *,
    mirror: Path | None,
    cache: Path,
    progress: Callable[[str], None],
) -> BenchmarkPlan | None:
    """Check names and data for ``config`` (a BenchmarksConfig); None when no tasks are listed."""
    if not config.tasks:
        return None
    offline = known_offline_skips(config.tasks, mirror) if config.optional else None
    if offline is not None:  # one line for them all: the reason and the fix are the same
        reason = next(iter(offline.values())).split(": ", 1)[1]
        progress(f"Benchmarks skipped (optional): {', '.join(offline)}: {reason}")
        return skipped_offline(config, offline, cache=cache)
    manager = task_manager(mirror=mirror, include_path=None, cache=cache)
    check_tasks(config.tasks, manager)
    found, skipped = check_data(
        config.tasks,
        manager,
        mirror=mirror,
        optional=config.optional,
        fix_hint=" (or set benchmarks.optional: true to skip them)",
    )
    for reason in skipped.values():
        progress(f"Benchmark skipped (optional): {reason}")
    tasks = [t for t in config.tasks if t in found]
    sizes = screening_sizes(config, tasks, guarded=list(objective.guard))
    proxy = {
        task: proxy_samples(found[task].leaves, size=sizes[task], seed=config.proxy_seed)
        for task in tasks
    }
    final_size = documents_needed(config.finalist_drop, kind=BINARY, spread=PLANNING_CHURN)
    finalist = {  # fewer than the full set where the full set is larger than needed
        task: proxy_samples(found[task].leaves, size=final_size, seed=config.proxy_seed + 1)
        for task in tasks
        if final_size < sum(found[task].leaves.values())
    }
    return BenchmarkPlan(
        tasks=tasks,
        mirror=str(mirror) if mirror else None,
        cache=str(cache),
        num_fewshot=config.num_fewshot,
        batch_size=config.batch_size,
        proxy=proxy,
        finalist_documents=finalist,
        set_sizes={t: sum(found[t].leaves.values()) for t in tasks},
        digests={t: found[t].digest for t in tasks},
        metric_overrides=dict(config.metrics),
        weights={t: w for t, w in objective.benchmark_weights.items() if t in found},
        guard={t: m for t, m in objective.guard.items() if t in found},
        finalists=config.finalists if tasks else 0,
        skipped=skipped,
        share_prefix=config.share_prefix,
        dtype=config.dtype,
        screen_drop=config.screen_drop,
        task_dirs=narrow_index_dirs([found[t] for t in tasks], manager) if tasks else None,
    )


def skipped_offline(
    config: BenchmarksConfig, skipped: dict[str, str], *, cache: Path
) -> BenchmarkPlan:
    """The plan when every listed task is optional and known to be out of reach offline: none."""
    return BenchmarkPlan(
        tasks=[],
        mirror=None,
        cache=str(cache),
        num_fewshot=config.num_fewshot,
        batch_size=config.batch_size,
        proxy={},
        digests={},
        metric_overrides=dict(config.metrics),
        weights={},
        guard={},
        finalists=0,
        skipped=skipped,
        share_prefix=config.share_prefix,
    )


def screening_sizes(
    config: BenchmarksConfig, tasks: list[str], *, guarded: list[str]
) -> dict[str, int]:
    """Documents per task for each trial: ``proxy_sizes`` where named, else enough for a
    guarded task to catch a ``screen_drop`` collapse (80% power, the planning churn, at the
    alpha of each of its ``SCREENING_LOOKS`` looks: 108 for 15 points), else ``proxy_size``."""
    alpha = look_alpha(SCREENING_LOOKS)
    screened = documents_needed(config.screen_drop, kind=BINARY, spread=PLANNING_CHURN, alpha=alpha)
    return {
        task: config.proxy_sizes.get(task, screened if task in guarded else config.proxy_size)
        for task in tasks
    }


# --------------------------------------------------------------------------- scoring
def score_plan(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    plan: BenchmarkPlan,
    *,
    phase: str,
    tasks: list[str] | None = None,
) -> tuple[BenchmarkScores, float]:
    """Score a loaded model on the plan's proxy documents or full sets; returns the seconds too
    (the task index included).

    One lm-eval call per task: lm-eval batches requests across the tasks of one call, so a task
    scored alone gets the same batches whichever other tasks run (the base model's cached
    scores and every trial's stay comparable). Each task's seconds go in the eval config.
    """
    tasks = tasks if tasks is not None else plan.tasks
    started_all = time.perf_counter()
    manager, scores = plan.manager(), BenchmarkScores(metrics={})
    seconds: dict[str, float] = {}
    dtype = scoring_dtype(model, plan.dtype)
    with scored_in(model, dtype) as scored:
        for task in tasks:
            started = time.perf_counter()
            samples = plan.documents(task, phase=phase)
            # a group's proxy covers some of its subtasks: score those, then pool them
            names = list(samples) if samples and list(samples) != [task] else [task]
            part = score_benchmarks(
                scored,
                tokenizer,
                tasks=names,
                batch_size=plan.batch_size,
                manager=manager,
                num_fewshot=plan.num_fewshot,
                samples=samples,
                share_prefix=plan.share_prefix,
            )
            scores = scores.merge(pool_group(part, task) if names != [task] else part)
            seconds[task] = time.perf_counter() - started
    scores.config["tasks"], scores.config["phase"] = tasks, phase
    scores.config["seconds"], scores.config["dtype"] = seconds, str(dtype).removeprefix("torch.")
    return scores, time.perf_counter() - started_all


def score_key(plan: BenchmarkPlan, task: str, *, phase: str, model_id: str) -> str:
    """Cache key of one task's base scores: model, task, few-shot, documents, data digest."""
    import hashlib
    from importlib.metadata import version

    documents = plan.documents(task, phase=phase) or FULL
    key = {
        "model": model_id,
        "task": task,
        "num_fewshot": plan.num_fewshot,
        "batch_size": plan.batch_size,
        "documents": documents,
        "data": plan.digests[task],
        "share_prefix": plan.share_prefix,
        "dtype": [plan.dtype, cpu_has_bf16()],
        "lm_eval": version("lm_eval"),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def base_score_file(plan: BenchmarkPlan, task: str, *, phase: str, model_id: str) -> Path:
    """Where one task's base-model scores in ``phase`` are cached."""
    key = score_key(plan, task, phase=phase, model_id=model_id)
    return Path(plan.cache) / "benchmark_scores" / f"{key}.json"


def uncached_tasks(plan: BenchmarkPlan, *, phase: str, model_id: str) -> list[str]:
    """The plan's tasks whose base-model scores in ``phase`` are not in the cache yet."""
    return [
        task
        for task in plan.tasks
        if not base_score_file(plan, task, phase=phase, model_id=model_id).is_file()
    ]


def cached_base_scores(
    plan: BenchmarkPlan,
    *,
    phase: str,
    model_id: str,
    load: LoadModel,
    progress: Callable[[str], None],
) -> BenchmarkScores:
    """The base model's scores, computed only for the tasks not already in the cache."""
    paths = {t: base_score_file(plan, t, phase=phase, model_id=model_id) for t in plan.tasks}
    missing = uncached_tasks(plan, phase=phase, model_id=model_id)
    scores = BenchmarkScores(metrics={})
    if missing:
        progress(f"Scoring the base model on {', '.join(missing)} ({phase}; cached afterwards) ...")
        model, tokenizer = load()
        fresh, _ = score_plan(model, tokenizer, plan, phase=phase, tasks=missing)
        for task in missing:
            paths[task].parent.mkdir(parents=True, exist_ok=True)
            partial = paths[task].with_suffix(".partial")
            partial.write_text(json.dumps(fresh.only([task]).to_json()))
            partial.replace(paths[task])  # atomic: a reader never sees half an entry
    for task in plan.tasks:
        scores = scores.merge(BenchmarkScores.from_json(json.loads(paths[task].read_text())))
    if not missing:
        progress(f"Base model benchmark scores ({phase}): cached.")
    return scores


# --------------------------------------------------------------------------- metrics
def primary_scores(scores: BenchmarkScores, plan: BenchmarkPlan) -> dict[str, float]:
    """Each task's score on its primary metric (acc_norm for ARC, acc for MMLU, ...)."""
    out = {}
    for task in plan.tasks:
        metrics = scores.metrics.get(task)
        if not metrics:  # not scored (nothing logged for it)
            continue
        name = primary_metric(task, metrics, plan.metric_overrides)
        if name in metrics:
            out[task] = metrics[name]
    return out


def item_scores(scores: BenchmarkScores, plan: BenchmarkPlan, task: str) -> dict[str, float]:
    """A task's primary metric per document, keyed ``<leaf task>/<doc id>``: paired tests' input."""
    metrics = scores.metrics.get(task)
    if not metrics:
        return {}
    name = primary_metric(task, metrics, plan.metric_overrides)
    return {
        f"{leaf}/{row['doc_id']}": float(row[name])
        for leaf in scores.members(task)
        for row in scores.samples.get(leaf, [])
        if isinstance(row.get(name), (int, float))
    }


def base_with(plan: BenchmarkPlan, scores: BenchmarkScores, *, phase: str) -> BenchmarkPlan:
    """The plan with the base model's ``phase`` scores, per task and per document, filled in."""
    items = {task: item_scores(scores, plan, task) for task in plan.tasks}
    return replace(
        plan,
        base={**plan.base, phase: primary_scores(scores, plan)},
        base_items={**plan.base_items, phase: items},
    )


def paired_deltas(
    scores: BenchmarkScores, plan: BenchmarkPlan, *, phase: str
) -> dict[str, PairedComparison]:
    """Each task's per-document comparison with the base on the same documents."""
    base = plan.base_items.get(phase, {})
    out = {}
    for task in plan.tasks:
        ours = item_scores(scores, plan, task)
        if ours and set(ours) & set(base.get(task, {})):
            out[task] = compare_paired(ours, base[task], resamples=2000)
    return out


def phase_metrics(
    scores: BenchmarkScores,
    plan: BenchmarkPlan,
    *,
    phase: str,
    heldout: float | None,
    seconds: float,
) -> dict[str, float]:
    """``bench/<phase>/<task>/<metric>``, each task's ``delta`` vs the base, and the composite.

    A delta is against the base model on the same documents: where a task was scored on part
    of the base's documents (its looks stopped early), the paired mean difference on those."""
    primary = primary_scores(scores, plan)
    task_deltas = deltas(primary, plan.base.get(phase, {}))
    paired = paired_deltas(scores, plan, phase=phase)
    task_deltas.update({task: comparison.delta for task, comparison in paired.items()})
    shown = scores
    if phase == PROXY or plan.finalist_documents:  # per-subject scores of a subset are noise
        keep = [*plan.tasks, *scores.groups]
        shown = BenchmarkScores({k: v for k, v in scores.metrics.items() if k in keep})
    metrics = {**bench_metrics(phase, shown.metrics), phase_seconds(phase): seconds}
    per_task = scores.config.get("seconds", {})
    metrics.update({bench_name(phase, task, SECONDS): t for task, t in per_task.items()})
    metrics.update({bench_name(phase, task, DELTA): d for task, d in task_deltas.items()})
    for task, comparison in paired.items():
        metrics[bench_name(phase, task, DELTA_CI_LOW)] = comparison.ci_low
        metrics[bench_name(phase, task, DELTA_CI_HIGH)] = comparison.ci_high
        if comparison.p_value is not None:  # 0/1 scores: McNemar's exact test
            metrics[bench_name(phase, task, DELTA_P_VALUE)] = comparison.p_value
        metrics[bench_name(phase, task, DOCUMENTS)] = float(comparison.n)
        detectable = resolution_of(comparison).detectable
        if math.isfinite(detectable):  # absent: these documents cannot show a regression
            metrics[bench_name(phase, task, DETECTABLE_DROP)] = detectable
    if phase == PROXY and task_deltas:
        metrics[BENCHMARK_DELTA] = sum(task_deltas.values()) / len(task_deltas)
    if plan.weights and heldout is not None:
        metrics[composite_name(phase)] = composite(
            heldout, task_deltas=task_deltas, weights=plan.weights, mode=plan.mode
        )
    return metrics


def write_samples(scores: BenchmarkScores, directory: Path) -> None:
    """Per-sample outputs, one jsonl per task, plus the eval config: the paired tests' input."""
    directory.mkdir(parents=True, exist_ok=True)
    for task, rows in scores.samples.items():
        with (directory / f"{task}.jsonl").open("w") as handle:
            handle.writelines(json.dumps(r, default=str) + "\n" for r in rows)
    (directory / "eval_config.json").write_text(json.dumps(scores.config, indent=2, default=str))
