"""What is said of the best trial under the table, in ``sweep launch``'s summary and ``sweep best``:
its objective beside the base model's and the rows it was computed on, how far apart the trials
landed (what the search gained over the median trial), each benchmark's delta with what its
documents can detect and whether the base sits at chance, the guard's verdicts, and a
multi-objective sweep's Pareto front with the rule that picked the trial. The table itself is
``sweeps/driver/display.py``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from evals.metric_keys import DELTA, FULL, PROXY, BenchKey, LoggedDelta, short_name, task_stats
from evals.objective import chance_note
from sweeps.driver.display import ABSENT, BEST_MARK, fmt_value, metric_scope
from sweeps.tracking.state import SweepState, TrialRecord


def describe_best(state: SweepState, record: TrialRecord) -> list[str]:
    """The best trial's objective beside the base model's, the rows it was computed on, and
    what a finalist was ranked by."""
    metric = state.objective_metric
    value, base = record.metrics.get(metric), state.base_metrics.get(metric)
    shown = ABSENT if value is None else f"{value:.4f}"
    delta = (
        ""
        if value is None or base is None
        else (f" (base model {base:.4f}, delta {value - base:+.4f})")
    )
    name = short_name(metric)
    lines = [
        f"Best trial {record.name}: {metric}={shown}{delta}",
        f"{name}: {metric_scope(state, metric).words}",
    ]
    if record.final_objective is not None:
        lines.append(
            f"finalist: objective {record.final_objective:.4f} with the full benchmark "
            "sets' deltas (what it was ranked by)"
        )
    spread = describe_spread(state, record)
    return [
        *lines,
        *([spread] if spread else []),
        *describe_benchmarks(record),
        *describe_front(state, record),
    ]


def params_words(params: Mapping[str, object]) -> str:
    """``learning_rate 0.00363, lora_r 16, lora_alpha 32`` (floats to 3 significant digits)."""
    return ", ".join(
        f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in params.items()
    )


def describe_benchmarks(record: TrialRecord) -> list[str]:
    """Each benchmark's delta against the base with what its documents can show (the finalist
    tier's when scored there), whether the base sits at chance, and the guard's verdicts."""
    tasks = dict.fromkeys(
        key.task
        for key in map(BenchKey.parse, record.metrics)
        if key is not None and key.stat == DELTA
    )
    lines = []
    for task in tasks:
        logged = LoggedDelta.read(record.metrics, phase=FULL, task=task) or LoggedDelta.read(
            record.metrics, phase=PROXY, task=task
        )
        if logged is None:
            continue
        lines.append(
            f"benchmark {task}: delta {logged.delta:+.4f} vs the base model "
            f"{detectable_words(logged)}"
        )
        note = base_chance_note(record.metrics, logged)
        lines += [note] if note else []
    lines += [f"guard: regressed: {line}" for line in record.guard]
    lines += [f"guard: {line}" for line in record.guard_open]
    return lines


def detectable_words(logged: LoggedDelta) -> str:
    """``on 92 documents (proxy); they detect a drop of 14.1 points or more`` (80% power)."""
    where = (
        f"on the {logged.phase} set"
        if logged.documents is None
        else f"on {logged.documents} documents ({logged.phase})"
    )
    if logged.detectable is None:
        return f"{where}; too few documents to detect a regression"
    return (
        f"{where}; they detect a drop of {logged.detectable * 100:.1f} points or more "
        "(80% power, alpha 0.05, paired)"
    )


def base_chance_note(metrics: dict[str, float], logged: LoggedDelta) -> str | None:
    """The chance note for the base model's score on the task (its score: the trial's minus
    the delta; its standard error: the trial's, on the same documents)."""
    stats = task_stats(metrics, phase=logged.phase, task=logged.task)
    name = next((m for m in ("acc_norm", "acc") if m in stats), None)
    if name is None:
        return None
    return chance_note(logged.task, stats[name] - logged.delta, stats.get(f"{name}_stderr"))


def describe_front(state: SweepState, record: TrialRecord) -> list[str]:
    """A multi-objective sweep's Pareto front, each trial with its objectives, and the rule
    that picked ``record`` from it (nothing for a sweep of one objective)."""
    if not state.multi_objective:
        return []
    goals, front = state.goals, state.front()
    knee = state.pick == "knee"
    named = " and ".join(f"{g.metric} ({g.mode})" for g in goals)
    picked = "by the knee" if knee else f"as the best {goals[0].metric}"
    lines = [
        f"Pareto front of {named}: {len(front)} trial{'' if len(front) == 1 else 's'}; "
        f"picked {picked}: {record.name}"
    ]
    for trial in front:
        values = {**trial.metrics, goals[0].metric: trial.objective(goals[0].metric)}
        shown = ", ".join(
            f"{short_name(g.metric)} {fmt_value(values.get(g.metric))}" for g in goals
        )
        lines.append(f"{BEST_MARK if trial is record else ' '} {trial.name}: {shown}")
    lines.append(
        "the knee: the front trial closest to the ideal point, each objective scaled "
        "0..1 over the front; "
        + (
            f"objective.pick: first takes the best {goals[0].metric} instead"
            if knee
            else "objective.pick is first"
        )
    )
    return lines


def describe_spread(state: SweepState, record: TrialRecord) -> str | None:
    """How far apart the trials landed, and what the search gained over the median trial: the
    worst quartile, the median and the best of every trial's last value (a trial stopped early,
    at the rung it stopped)."""
    metric = state.objective_metric
    values = sorted(
        v
        for t in state.trials.values()
        if t.status in ("completed", "pruned") and (v := t.metrics.get(metric)) is not None
    )
    best = record.metrics.get(metric)
    if len(values) < 3 or best is None:
        return None
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    quarter, gain = (low, best - median) if state.objective_mode == "max" else (high, median - best)
    return (
        f"spread over {len(values)} trials: worst quarter {quarter:.4f}, median "
        f"{median:.4f}, best {best:.4f}; the search gained {gain:+.4f} over the "
        "median trial"
    )
