"""The sweep's objective and its no-regression guard, over benchmark scores (no heavy imports).

Each benchmark task is read through one lm-eval metric (its *primary* metric: ``acc_norm`` for
ARC and HellaSwag, ``acc`` for MMLU and TruthfulQA, configurable per task). A trial's delta on a
task is its primary score minus the base model's on the same documents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from evals.metric_keys import COMPOSITE, FULL, PROXY, LoggedDelta
from evals.paired import is_significant

__all__ = [
    "COMPOSITE",
    "FALLBACK_METRICS",
    "PRIMARY_METRICS",
    "composite",
    "deltas",
    "guard_checks",
    "guard_violations",
    "primary_metric",
]

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


REGRESSED, CLEARED, UNRESOLVED = "regressed", "cleared", "unresolved"


@dataclass(frozen=True)
class GuardCheck:
    """The guard's verdict on one guarded task, and the line that says why."""

    task: str
    verdict: str  # regressed | cleared | unresolved
    line: str


def guard_checks(
    metrics: Mapping[str, float], margins: Mapping[str, float], *, alpha: float = 0.05
) -> list[GuardCheck]:
    """The no-regression guard, one verdict per guarded task, read from the trial's logged
    deltas against the base model (the finalist tier's when it has one, else the screening's).

    - **regressed**: it lost more than the margin, and the loss is not chance (its paired test is
      significant; a finalist's loss beyond the margin always counts, as it did before).
    - **cleared**: no such loss, and the documents could have shown one: the margin is at least
      the drop they detect with 80% power (``detectable_drop``), or the interval's low end is
      above minus the margin.
    - **unresolved**: neither. A trial is never called clean on documents that could not have
      caught a regression of the margin's size; the line says what they could detect.

    The sweep's verdict on every trial and the promotion gate's are this one function.
    """
    checks = []
    for task, margin in margins.items():
        logged = LoggedDelta.read(metrics, phase=FULL, task=task) or LoggedDelta.read(
            metrics, phase=PROXY, task=task
        )
        if logged is None:
            checks.append(GuardCheck(task, UNRESOLVED, f"{task}: not scored, so not cleared"))
            continue
        checks.append(_guard_check(logged, margin=margin, alpha=alpha))
    return checks


def _guard_check(logged: LoggedDelta, *, margin: float, alpha: float) -> GuardCheck:
    task, where = logged.task, _where(logged)
    chance = (
        logged.phase == PROXY
        and logged.tested
        and not is_significant(
            p_value=logged.p_value,
            alpha=alpha,
            ci_low=math.nan if logged.ci_low is None else logged.ci_low,
            ci_high=math.nan if logged.ci_high is None else logged.ci_high,
        )
    )
    if -logged.delta > margin and not chance:
        return GuardCheck(
            task,
            REGRESSED,
            f"{task}: {logged.delta:+.4f} vs base {where} "
            f"(drop {-logged.delta:.4f} > margin {margin:.4f})",
        )
    seen = logged.detectable is not None and logged.detectable <= margin + 1e-9
    bounded = logged.ci_low is not None and logged.ci_low > -margin
    if seen or bounded:
        why = (
            f"a {margin * 100:.1f}-point drop would show"
            if seen
            else f"interval low end {logged.ci_low:+.4f} > -{margin:.4f}"
        )
        return GuardCheck(task, CLEARED, f"{task}: {logged.delta:+.4f} vs base {where}; {why}")
    detect = (
        "too few documents to detect a regression"
        if logged.detectable is None
        else f"they detect a drop of {logged.detectable * 100:.1f} points or more"
    )
    return GuardCheck(
        task,
        UNRESOLVED,
        f"{task}: not cleared: {logged.delta:+.4f} vs base "
        f"{where}, but the margin is {margin * 100:.1f} points and {detect}",
    )


def _where(logged: LoggedDelta) -> str:
    """``on the proxy set``, or with its documents: ``on 92 documents (proxy)``."""
    if logged.documents is None:  # logged before documents were
        return f"on the {logged.phase} set"
    return f"on {logged.documents} documents ({logged.phase})"


def guard_violations(
    metrics: Mapping[str, float], margins: Mapping[str, float], *, alpha: float = 0.05
) -> list[str]:
    """One line per guarded benchmark the trial regressed on beyond its margin."""
    checks = guard_checks(metrics, margins, alpha=alpha)
    return [c.line for c in checks if c.verdict == REGRESSED]


# chance: the score of a uniform guess, per task (on the benchmark mirror's documents: ARC's
# mean 1/choices 0.2502; TruthfulQA-MC2's mean share of true answers 0.4484, MC1's 0.2261)
CHANCE = {
    "arc_challenge": 0.25,
    "arc_easy": 0.25,
    "hellaswag": 0.25,
    "mmlu": 0.25,
    "truthfulqa_mc1": 0.2261,
    "truthfulqa_mc2": 0.4484,
}


def chance_note(task: str, base: float | None, stderr: float | None) -> str | None:
    """A line when the base model's score is within noise (1.96 standard errors) of a uniform
    guess: a regression cannot show on such a task, whatever the documents."""
    chance = CHANCE.get(task)
    if chance is None or base is None or stderr is None or not math.isfinite(stderr):
        return None
    if base - chance > 1.96 * stderr:
        return None
    return (
        f"{task}: the base model's {base:.4f} is within noise of chance ({chance:.4f}), "
        "so a regression cannot show here"
    )
