"""The sweep's objective and its no-regression guard, over benchmark scores (no heavy imports).

Each benchmark task is read through one lm-eval metric (its *primary* metric: ``acc_norm`` for
ARC and HellaSwag, ``acc`` for MMLU and TruthfulQA, configurable per task). A trial's delta on a
task is its primary score minus the base model's on the same documents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from evals.metric_keys import COMPOSITE, FULL, PROXY, LoggedDelta
from evals.paired import is_significant

__all__ = [
    "COMPOSITE",
    "FALLBACK_METRICS",
    "PRIMARY_METRICS",
    "composite",
    "deltas",
    "guard_violations",
    "primary_metric",
]  # fmt: skip

PRIMARY_METRICS = {
    "arc_challenge": "acc_norm",
    "arc_easy": "acc_norm",
    "hellaswag": "acc_norm",
    "mmlu": "acc",
    "truthfulqa_mc1": "acc",
    "truthfulqa_mc2": "acc",
}
FALLBACK_METRICS = ("acc_norm", "acc", "exact_match", "f1", "mc2", "em")


def primary_metric(task: str, metrics: Mapping[str, float], overrides: Mapping[str, str]) -> str:
    """The metric a task is judged by: the config's choice, lm-eval's usual one, or a fallback."""
    if task in overrides:
        return overrides[task]
    if task in PRIMARY_METRICS:
        return PRIMARY_METRICS[task]
    found = next((m for m in FALLBACK_METRICS if m in metrics), None)
    if found is None:
        raise ValueError(
            f"benchmark {task}: none of {', '.join(FALLBACK_METRICS)} among its metrics "
            f"({', '.join(sorted(metrics))}); name one in benchmarks.metrics"
        )
    return found


def deltas(scores: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
    """Score minus the base model's score, for every task both have."""
    return {task: scores[task] - base[task] for task in scores if task in base}


def composite(
    heldout: float, *, task_deltas: Mapping[str, float], weights: Mapping[str, float], mode: str
) -> float:
    """Held-out metric plus the weighted benchmark deltas (minus them when lower is better)."""
    bonus = sum(weight * task_deltas.get(task, 0.0) for task, weight in weights.items())
    return heldout + bonus if mode == "max" else heldout - bonus


def guard_violations(
    metrics: Mapping[str, float], margins: Mapping[str, float], *, alpha: float = 0.05
) -> list[str]:
    """The no-regression guard: one line per guarded benchmark a trial lost more than its
    margin on, read from the trial's logged deltas against the base model.

    The sweep's verdict on every trial and the promotion gate's are this one function. Each
    task is judged on the full set when the trial has a full-set delta for it (a finalist),
    else on the proxy. On the proxy a loss does not count when its logged paired test says it
    could be chance (on an 8-document proxy one flipped answer is 12 points); a proxy loss with
    no test logged counts. A full-set loss beyond the margin always counts.
    """
    lines = []
    for task, margin in margins.items():
        logged = LoggedDelta.read(metrics, phase=FULL, task=task) or LoggedDelta.read(
            metrics, phase=PROXY, task=task
        )  # fmt: skip
        if logged is None or -logged.delta <= margin:
            continue
        if logged.phase == PROXY and logged.tested and not is_significant(
            p_value=logged.p_value, alpha=alpha,
            ci_low=math.nan if logged.ci_low is None else logged.ci_low,
            ci_high=math.nan if logged.ci_high is None else logged.ci_high,
        ):  # fmt: skip
            continue
        lines.append(f"{task}: {logged.delta:+.4f} vs base on the {logged.phase} set "
                     f"(drop {-logged.delta:.4f} > margin {margin:.4f})")  # fmt: skip
    return lines
