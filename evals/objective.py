"""The sweep's objective and its no-regression guard, over benchmark scores (no heavy imports).

Each benchmark task is read through one lm-eval metric (its *primary* metric: ``acc_norm`` for
ARC and HellaSwag, ``acc`` for MMLU and TruthfulQA, configurable per task). A trial's delta on a
task is its primary score minus the base model's on the same documents.
"""

from __future__ import annotations

from collections.abc import Mapping

PRIMARY_METRICS = {
    "arc_challenge": "acc_norm",
    "arc_easy": "acc_norm",
    "hellaswag": "acc_norm",
    "mmlu": "acc",
    "truthfulqa_mc1": "acc",
    "truthfulqa_mc2": "acc",
}
FALLBACK_METRICS = ("acc_norm", "acc", "exact_match", "f1", "mc2", "em")
COMPOSITE = "objective/composite"


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
    scores: Mapping[str, float], base: Mapping[str, float], margins: Mapping[str, float], *,
    significant: Mapping[str, bool] | None = None,
) -> list[str]:  # fmt: skip
    """One line per guarded benchmark on which a trial lost more than its margin.

    With ``significant`` (per task: is the loss more than chance, by a paired test on the same
    documents), a task whose loss could be chance is not flagged: on an 8-document proxy one
    flipped answer is 12 points.
    """
    lines = []
    for task, margin in margins.items():
        if task not in scores or task not in base or base[task] - scores[task] <= margin:
            continue
        if significant is not None and not significant.get(task, True):
            continue
        drop = base[task] - scores[task]
        lines.append(
            f"{task}: {scores[task]:.4f} vs base {base[task]:.4f} "
            f"(drop {drop:.4f} > margin {margin:.4f})"
        )
    return lines
