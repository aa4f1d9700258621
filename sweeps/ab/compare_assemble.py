"""The A/B report put together from the two sides' item scores and what was gathered, reading
nothing but the adapters' own files: the paired delta and the decision with its headline (the
benchmark clause states what the documents could detect), the held-out rows, the rows A lost,
still gets wrong and won, the hyperparameter diff and each side's cost."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from evals import metric_keys as keys
from evals.paired import MCNEMAR, compare_paired
from sweeps.ab.compare_report import (
    BenchmarkRow,
    CostRow,
    Delta,
    Gathered,
    ItemGroup,
    MetricRow,
    ParamRow,
    ReportContext,
    SideInfo,
    SkippedBenchmark,
)
from sweeps.serving.scoring import ItemScores
from sweeps.serving.sides import NO_ADAPTER, ItemRow, Side, item_rows, utc
from sweeps.tracking.state import SweepState

ORIENTATION = "A is the candidate, B the reference: every delta is A - B"


# --------------------------------------------------------------------------- assembling
def assemble(
    a: Side,
    b: Side,
    *,
    home: SweepState,
    metric: str,
    scores: tuple[ItemScores, ItemScores],
    gathered: Gathered,
    samples: int,
) -> ReportContext:
    """The report from the two sides' item scores and what was gathered: no I/O."""
    deltas = {
        name: a_minus_b(scores[0].by_item(key), scores[1].by_item(key), metric=name)
        for name, key in ((metric, "score"), ("exact_match", "exact_match"))
    }
    heldout = deltas[metric]
    items = item_rows(scores, cut=gathered.cut)
    params = side_params(a), side_params(b)  # None: a side with no adapter (read once)
    groups = item_groups(items, metric=metric)
    shown = {row.id for group in groups for row in group.rows}  # generations repeat none of them
    decision, headline = decide(
        a, b, heldout, benchmarks=gathered.benchmarks, skipped=gathered.skipped
    )
    return ReportContext(
        generated=utc(None),
        orientation=ORIENTATION,
        a=a.label,
        b=b.label,
        sides=[side_info("A", a), side_info("B", b)],
        sweep=home.name,
        base_model=home.base_model,
        metric=metric,
        rows=len(items),
        headline=headline,
        decision=decision,
        summary=summary_line(a.label, b.label, heldout),
        heldout_paired=heldout,
        heldout=heldout_rows(deltas, scores),
        benchmarks=gathered.benchmarks,
        benchmarks_skipped=gathered.skipped,
        benchmark_hints=gathered.hints,
        groups=groups,
        generations=[row for row in items if row.id not in shown][:samples],
        max_new_tokens=gathered.max_new_tokens,
        params=param_rows(*params),
        param_sides=[key for key, p in zip("AB", params, strict=True) if p is not None],
        cost=cost_rows(a, b),
        curves=gathered.curves,
        items=items,
    )


def a_minus_b(
    a: Mapping[str, float], b: Mapping[str, float], *, metric: str, resamples: int = 10_000
) -> Delta:
    """The paired comparison of the candidate A with the reference B: A - B."""
    from evals.power import resolution_of

    c = compare_paired(a, b, resamples=resamples)
    detectable = resolution_of(c).detectable
    label = f"McNemar p={c.p_value:.3g}" if c.test == MCNEMAR else "paired bootstrap"
    return Delta(
        metric=metric,
        n=c.n,
        mean_a=c.mean_candidate,
        mean_b=c.mean_reference,
        delta=c.delta,
        ci_low=c.ci_low,
        ci_high=c.ci_high,
        confidence=c.confidence,
        test=c.test,
        test_label=label,
        p_value=c.p_value,
        significant=c.significant(),
        a_better=c.candidate_better,
        b_better=c.reference_better,
        ties=c.ties,
        detectable=detectable if math.isfinite(detectable) else None,
    )


def decide(
    a: Side, b: Side, d: Delta, *, benchmarks: list[BenchmarkRow], skipped: list[SkippedBenchmark]
) -> tuple[str, str]:
    """The decision (a_better | b_better | no_difference) and its headline with the evidence."""
    sides = f"A ({a.ref})", f"B ({b.ref})"
    if not d.significant:
        decision, verdict = "no_difference", "No significant difference between {} and {}"
    elif d.delta > 0:
        decision, verdict = "a_better", "{} beats {}"
    else:
        decision, verdict = "b_better", "{} is worse than {}"
    evidence = (
        f"{d.delta:+.3f} [{d.confidence:.0%} CI {d.ci_low:+.3f}, {d.ci_high:+.3f}], "
        f"{d.a_better} of {d.n} rows better, {d.b_better} worse"
    )
    return decision, (
        f"{verdict.format(*sides)} on held-out {d.metric}: {evidence}; "
        f"{benchmark_verdict(benchmarks, skipped)}"
    )


def benchmark_verdict(rows: list[BenchmarkRow], skipped: list[SkippedBenchmark]) -> str:
    """The headline's benchmark clause. Never a bare "no regression": the absence of one is
    stated with the drop the documents could have detected, or as too few documents."""
    left_out = f" ({len(skipped)} not compared)" if skipped else ""
    if not rows:
        return f"benchmarks not compared ({len(skipped)} skipped)" if skipped else "no benchmarks"
    worse = [r.task for r in rows if r.significant and r.delta < 0]
    untested = [r.task for r in rows if r.significant is None and r.delta < 0]
    if worse:
        return f"benchmark regression on {', '.join(worse)}{left_out}"
    if untested:
        return f"lower on {', '.join(untested)} (no paired test){left_out}"
    return no_regression_clause(rows) + left_out


def no_regression_clause(rows: list[BenchmarkRow]) -> str:
    """``no benchmark regression larger than 14 points detectable (hellaswag: 14.1 on 92
    documents; ...)``, or ``too few documents to detect a benchmark regression (8 documents)``;
    tasks whose reference sits at chance are named (nothing can show there)."""
    resolved = [r for r in rows if r.detectable is not None]
    blind = [r for r in rows if r.detectable is None]
    at_chance = [r.task for r in rows if r.chance]
    chance = (
        f"; {', '.join(at_chance)} at chance for B, where no regression can show"
        if at_chance
        else ""
    )
    if not resolved:
        counts = ", ".join(f"{r.task}: {r.documents or 0}" for r in blind)
        return f"too few documents to detect a benchmark regression ({counts} documents){chance}"
    worst = max(r.detectable or 0.0 for r in resolved)
    parts = [
        f"{r.task}: {(r.detectable or 0.0) * 100:.1f} on {r.documents} documents" for r in resolved
    ]
    parts += [f"{r.task}: too few documents ({r.documents or 0})" for r in blind]
    return (
        f"no benchmark regression larger than {worst * 100:.0f} points detectable "
        f"({'; '.join(parts)}){chance}"
    )


def summary_line(a: str, b: str, d: Delta) -> str:
    verdict = "significant" if d.significant else "not significant"
    return (
        f"A: {a} vs B: {b} on {d.n} held-out rows: {d.metric} A {d.mean_a:.4f}, B "
        f"{d.mean_b:.4f}; delta (A - B) {d.delta:+.4f} ({d.confidence:.0%} CI {d.ci_low:+.4f} "
        f"to {d.ci_high:+.4f}; {d.test_label}; {verdict}). A better on {d.a_better} rows, "
        f"worse on {d.b_better}, tied on {d.ties}."
    )


def side_info(key: str, side: Side) -> SideInfo:
    if side.adapter is None:
        source = NO_ADAPTER
    elif side.record is not None and side.state is not None:
        source = f"trial {side.record.trial_id} of sweep {side.state.name}"
    else:
        source = f"adapter {side.adapter}"
    return SideInfo(key, side.ref, side.label, source, side.registry)


def heldout_rows(
    deltas: dict[str, Delta], scores: tuple[ItemScores, ItemScores]
) -> list[MetricRow]:
    rows = [
        MetricRow(
            name, d.mean_a, d.mean_b, d.delta, d.ci_low, d.ci_high, d.test_label, d.significant
        )
        for name, d in deltas.items()
    ]
    for name in keys.LOWER_IS_BETTER:  # per-token means: no per-item pairs
        va, vb = scores[0].metrics.get(name), scores[1].metrics.get(name)
        if va is not None and vb is not None:
            rows.append(
                MetricRow(
                    keys.short_name(name) + " (lower is better)",
                    va,
                    vb,
                    va - vb,
                    None,
                    None,
                    "token-level mean",
                    None,
                )
            )
    return rows


# --------------------------------------------------------------------------- rows and prompts
GROUPS = (  # key, title, rows shown, order: the rows to look at first come first
    ("lost", "Rows A lost to B", 10),
    ("wrong", "Rows A still gets wrong ({metric} below 1), not lost to B", 10),
    ("won", "Rows A won (right, and better than B)", 5),
)


def item_groups(items: list[ItemRow], *, metric: str) -> list[ItemGroup]:
    """Lost first (the largest loss first), then still wrong (the lowest score first), then
    won (the largest gain first); each row in one group only."""
    order: dict[str, Callable[[ItemRow], tuple[float, str]]] = {
        "lost": lambda r: (r.delta, r.id),
        "wrong": lambda r: (r.a_score, r.id),
        "won": lambda r: (-r.delta, r.id),
    }
    groups = []
    for key, title, limit in GROUPS:
        rows = sorted((r for r in items if r.group == key), key=order[key])
        groups.append(ItemGroup(key, title.format(metric=metric), len(rows), rows[:limit]))
    return groups


# --------------------------------------------------------------------------- hyperparameters, cost
def side_params(side: Side) -> dict[str, object] | None:
    """A side's hyperparameters: its trial's, a registry version's (eval_summary.json), or what
    a bare adapter's config records; None for the base model."""
    if side.adapter is None:
        return None
    if side.record is not None:
        return dict(side.record.params)
    summary = side.adapter.parent / "eval_summary.json"  # a registry version's files
    if summary.is_file():
        return dict(json.loads(summary.read_text()).get("params") or {})
    config_file = side.adapter / "adapter_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    names = {
        "r": "lora_r",
        "lora_alpha": "lora_alpha",
        "lora_dropout": "lora_dropout",
        "target_modules": "target_modules",
    }
    return {name: config[key] for key, name in names.items() if key in config}


def param_rows(pa: dict[str, object] | None, pb: dict[str, object] | None) -> list[ParamRow]:
    """Every hyperparameter of either side (``pa``, ``pb``: each side's, None with no adapter),
    both values rounded; differing ones first (a side with no adapter has no column in the
    table: see ``param_sides``)."""
    rows = []
    for name in sorted(set(pa or {}) | set(pb or {})):
        va, vb = (p.get(name) if p is not None else None for p in (pa, pb))
        differs = pa is not None and pb is not None and va != vb
        digits = 6 if differs and shown(va) == shown(vb) else 3  # distinct values look distinct
        rows.append(
            ParamRow(
                name,
                NO_ADAPTER if pa is None else shown(va, digits),
                NO_ADAPTER if pb is None else shown(vb, digits),
                differs,
            )
        )
    return sorted(rows, key=lambda r: not r.differs)


def shown(value: object, digits: int = 3) -> str:
    """A hyperparameter for reading: floats to ``digits`` significant digits (lr 0.00194)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def cost_rows(a: Side, b: Side) -> list[CostRow]:
    """Each side's trial (wall time, training, tokens, device-seconds) and its whole sweep
    (trials, device-hours), as the sweep's state records them."""
    rows = []
    for key, side in (("A", a), ("B", b)):
        metrics = side.record.metrics if side.record else {}
        state = side.state
        note = (
            ""
            if side.record
            else "base model: no training"
            if side.adapter is None
            else "trained outside the known sweeps: no cost recorded"
        )
        rows.append(
            CostRow(
                side=f"{key}: {side.ref}",
                trial=side.record.trial_id if side.record else None,
                wall_s=metrics.get(keys.COST_WALL_SECONDS),
                train_s=metrics.get(keys.TRAIN_SECONDS),
                tokens=metrics.get(keys.TOKENS_TRAINED),
                device_s=metrics.get(keys.COST_DEVICE_SECONDS),
                device=_device(side.config),
                sweep=state.name if state else None,
                sweep_trials=len(state.trials) if state else None,
                sweep_device_hours=state.device_hours() if state else None,
                note=note,
            )
        )
    return rows


def _device(config: dict[str, Any]) -> str:
    resources = config.get("resources") or {}
    gpus, cpus = float(resources.get("gpu") or 0), float(resources.get("cpu") or 1)
    return f"{gpus:g} GPU" if gpus else f"{cpus:g} CPU" if config else "-"
