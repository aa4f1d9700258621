"""``sweep compare A B``: an A/B report on two adapters (or an adapter and the base model).

A and B may be ``base``, a registry alias or version (``champion``, ``NAME@ALIAS``,
``models:/NAME/VERSION``), a sweep (its best trial), ``SWEEP/TRIAL``, a trial's run id, or an
adapter directory. A is the candidate and B the reference: every delta, in the HTML, the
Markdown, report.json and on the console, is A minus B, so ``sweep compare champion base``
shows the champion's gain. Both are scored on every held-out row of the sweep they come from
(``sweeps/serving/scoring.py``, cached), and compared item by item (``evals/paired.py``).

The report reads like a decision: a headline with the verdict and its evidence (the held-out
delta with its 95% CI, rows better and worse, benchmark regressions); then the rows A lost to
B, the rows A still gets wrong, and only then the rows it won, each prompt shown as its
conversation turns and each output in full. Then held-out and benchmark metrics side by side
(one line per skipped benchmark), side-by-side generations, training curves, the
hyperparameter diff, the cost of the trial and of its sweep, and the registry version and date
of a side named by the registry. It is self-contained HTML (the plot embedded) plus a Markdown
summary and report.json, rendered from jinja2 templates in ``sweeps/templates/``, written to
``--out`` and logged to MLflow as the artefacts of a ``compare`` run in the sweep's experiment.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals import metric_keys as keys
from evals.paired import MCNEMAR, compare_paired
from evals.preference import PreferenceSummary
from sweeps.ab.evidence import PREFERENCE_KINDS, load_evidence
from sweeps.console import Say
from sweeps.report_templates import clip, template_env
from sweeps.serving.scoring import ItemScores, all_rows
from sweeps.serving.sides import (
    BASE,
    NO_ADAPTER,
    ItemRow,
    PairedOutputs,
    RegistryVersion,
    Side,
    cut_outputs,
    experiment_name,
    home_config,
    item_rows,
    paired_outputs,
    slug,
    utc,
)
from sweeps.tracking.state import SweepState

if TYPE_CHECKING:
    from sweeps.ab.judge import JudgeSettings
    from sweeps.tracking.mlflow_facade import RunReader

ORIENTATION = "A is the candidate, B the reference: every delta is A - B"
CURVE_METRICS = (keys.TRAIN_LOSS, keys.HELDOUT_LOSS)


# --------------------------------------------------------------------------- the report's data


@dataclass(frozen=True)
class Delta:
    """A against the reference B on the items both were scored on: ``delta`` is
    mean(A) - mean(B), ``a_better`` the items where A scored higher."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    test: str  # mcnemar (0/1 scores) | bootstrap (graded scores)
    test_label: str
    p_value: float | None
    significant: bool
    a_better: int
    b_better: int
    ties: int
    detectable: float | None = None  # the drop A - B these items detect (80% power); None: none


@dataclass(frozen=True)
class SideInfo:
    key: str  # A or B
    ref: str  # as the user named it
    label: str
    source: str  # what it is: a trial of a sweep, an adapter directory, the base model
    registry: RegistryVersion | None


@dataclass(frozen=True)
class ItemGroup:
    key: str
    title: str
    total: int
    rows: list[ItemRow]


@dataclass(frozen=True)
class MetricRow:
    name: str
    a: float
    b: float
    delta: float
    ci_low: float | None
    ci_high: float | None
    test: str
    significant: bool | None


@dataclass(frozen=True)
class BenchmarkRow(MetricRow):
    task: str = ""
    documents: int | None = None  # the documents both sides were scored on
    detectable: float | None = None  # the drop they detect (80% power); None: none
    chance: str | None = None  # B's score is within noise of chance: nothing can show there
    resolution: str = "no paired test: what it could detect is unknown"  # the two above, in words


def resolution_words(documents: int, detectable: float | None) -> str:
    """What a benchmark row's documents can show."""
    if detectable is None:
        return f"too few documents to detect a regression ({documents} documents)"
    return (f"detects a drop of {detectable * 100:.1f} points or more "
            f"({documents} documents, 80% power)")  # fmt: skip


@dataclass(frozen=True)
class SkippedBenchmark:  # a benchmark the report leaves out, with why: one line each
    task: str
    reason: str


@dataclass(frozen=True)
class ParamRow:
    """One hyperparameter of the two sides, and whether they differ."""

    name: str
    a: str
    b: str
    differs: bool


@dataclass(frozen=True)
class CostRow:
    side: str
    trial: str | None
    wall_s: float | None
    train_s: float | None
    tokens: float | None
    device_s: float | None
    device: str
    sweep: str | None
    sweep_trials: int | None
    sweep_device_hours: float | None
    note: str = ""


@dataclass(frozen=True)
class Gathered:
    """What the report reads from MLflow, the sweep's files and the tokenizer."""

    benchmarks: list[BenchmarkRow] = field(default_factory=list)
    skipped: list[SkippedBenchmark] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # how to get the skipped ones, each once
    curves: str | None = None
    max_new_tokens: int | None = None
    cut: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())  # ids, A and B


@dataclass(frozen=True)
class UnreadRow:
    """A row the judge's answer could not be read for, with the answers (clipped)."""

    id: str
    answers: list[str]


@dataclass(frozen=True)
class PreferenceSection:
    """The LLM judge's or the human raters' pairwise verdicts on A against B."""

    kind: str  # judge | human
    title: str
    source: str
    summary: PreferenceSummary
    described: str  # the summary in one line
    verdict: str
    notes: list[str]
    unread: list[UnreadRow]
    run_id: str


@dataclass(frozen=True)
class EvidenceRow:
    """One kind of evidence and what it says (the gate's ``promote.require`` names these)."""

    kind: str  # heldout | judge | human
    says: str
    significant: bool | None  # None: not gathered
    favours: str = ""  # A | B | "" (neither)


@dataclass(frozen=True)
class ReportContext:
    """Everything the HTML, the Markdown and report.json show (report.json: all but curves)."""

    generated: str
    orientation: str
    a: str
    b: str
    sides: list[SideInfo]
    sweep: str
    base_model: str
    metric: str
    rows: int
    headline: str
    decision: str  # a_better | b_better | no_difference
    summary: str
    heldout_paired: Delta
    heldout: list[MetricRow]
    benchmarks: list[BenchmarkRow]
    benchmarks_skipped: list[SkippedBenchmark]
    benchmark_hints: list[str]
    groups: list[ItemGroup]
    generations: list[ItemRow]
    max_new_tokens: int | None
    params: list[ParamRow]
    cost: list[CostRow]
    curves: str | None
    items: list[ItemRow]
    param_sides: list[str] = field(default_factory=lambda: ["A", "B"])  # sides with params
    preferences: list[PreferenceSection] = field(default_factory=list)
    evidence: list[EvidenceRow] = field(default_factory=list)
    errors_link: str | None = None  # sweep errors' summary of A's wrong rows, beside the report
    gate: str = ""  # what the sweep's promote.require would make of this evidence, A over B

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    html: Path
    markdown: Path
    run_id: str
    heldout: Delta
    metric: str
    headline: str


def compare(
    a: str, b: str, *, state_dir: Path, mlflow_uri: str, out_dir: Path | None = None,
    samples: int = 8, progress: Say = print, judge: JudgeSettings | None = None,
) -> Report:  # fmt: skip
    """Score A and B on the same held-out rows, build the report, write it and log it.
    ``judge``: ask the LLM judge too (cached); stored judge and human evidence is shown anyway."""
    asker = None
    if judge is not None:  # checked before anything is scored
        from sweeps.ab.judge import judge_pair, make_asker

        asker = make_asker(judge, state_dir=state_dir, mlflow_uri=mlflow_uri)
    pair = paired_outputs(a, b, state_dir=state_dir, mlflow_uri=mlflow_uri, progress=progress)
    if judge is not None:
        judge_pair(a, b, state_dir=state_dir, mlflow_uri=mlflow_uri, settings=judge, pair=pair,
                   asker=asker, progress=progress)  # fmt: skip
    out_dir = out_dir or Path("reports") / f"{slug(a)}-vs-{slug(b)}"
    context = report_context(pair, mlflow_uri=mlflow_uri, samples=samples)
    context = with_preferences(context, pair, errors_link=write_a_errors(pair, out_dir))
    html, markdown = write_report(context, out_dir)
    run_id = log_report(context, out_dir, home=pair.home, mlflow_uri=mlflow_uri)
    return Report(html, markdown, run_id, context.heldout_paired, pair.spec.task_metric,
                  context.headline)  # fmt: skip


# --------------------------------------------------------------------------- gathering
def report_context(pair: PairedOutputs, *, mlflow_uri: str, samples: int) -> ReportContext:
    """The report's data: what MLflow and the sweep hold, then :func:`assemble`."""
    from sweeps.tracking.mlflow_facade import RunReader

    a, b, home, spec, scores = pair.a, pair.b, pair.home, pair.spec, pair.scores

    reader = RunReader(mlflow_uri)
    parent = reader.summary(home.parent_run_id)  # the base model's scores, skip reasons
    with tempfile.TemporaryDirectory(prefix="lora-sweep-compare-") as tmp:
        base = keys.under_group(keys.BASE, parent["metrics"])  # the base model's scores
        benchmarks = benchmark_rows(a, b, home=home, reader=reader, base=base,
                                    scratch=Path(tmp))  # fmt: skip
    tasks = (home_config(home).get("benchmarks") or {}).get("tasks") or []
    skipped, hints = skipped_benchmarks(parent["tags"].get("benchmarks.skipped", "none"), tasks,
                                        scored=[r.task for r in benchmarks])  # fmt: skip
    limit = all_rows(spec).evaluation.max_new_tokens  # what scoring used
    gathered = Gathered(
        benchmarks=benchmarks, skipped=skipped, hints=hints,
        curves=curves_png(a, b, home=home, reader=reader, metric=spec.task_metric),
        max_new_tokens=limit, cut=cut_outputs(spec, scores, limit=limit),
    )  # fmt: skip
    return assemble(a, b, home=home, metric=spec.task_metric, scores=scores, gathered=gathered,
                    samples=samples)  # fmt: skip


def benchmark_rows(
    a: Side, b: Side, *, home: SweepState, reader: RunReader, base: Mapping[str, float],
    scratch: Path,
) -> list[BenchmarkRow]:  # fmt: skip
    """Each benchmark both sides were scored on (the full sets when both have them), with the
    paired test on the documents both were scored on, from their per-sample artefacts;
    ``base``: the base model's metrics (the parent run's ``base/...``, without the prefix)."""
    from evals.objective import chance_note, primary_metric

    benchmarks = home_config(home).get("benchmarks") or {}
    tasks, overrides = benchmarks.get("tasks") or [], benchmarks.get("metrics") or {}
    rows = []
    for task in tasks:
        for phase in (keys.FULL, keys.PROXY):
            va, vb = (_bench(s, base, phase, task) for s in (a, b))
            if not (va and vb):
                continue
            name = primary_metric(task, va, overrides)
            if name in va and name in vb:
                docs = [_document_scores(s, home=home, reader=reader, phase=phase, task=task,
                                         metric=name, scratch=scratch) for s in (a, b)]  # fmt: skip
                paired = (a_minus_b(docs[0], docs[1], metric=name, resamples=2000)
                          if set(docs[0]) & set(docs[1]) else None)  # fmt: skip
                chance = chance_note(task, vb[name], vb.get(f"{name}_stderr"))
                rows.append(bench_row(task, f"{task} ({name}, {phase})", va[name], vb[name],
                                      paired, chance=chance))  # fmt: skip
            break
    return rows


def _bench(side: Side, base: Mapping[str, float], phase: str, task: str) -> dict[str, float]:
    """What a side logged for ``task`` in ``phase``, by statistic (the base model's: ``base``)."""
    source = side.record.metrics if side.record else base if side.ref == BASE else {}
    return keys.task_stats(source, phase=phase, task=task)


def _document_scores(
    side: Side, *, home: SweepState, reader: RunReader, phase: str, task: str, metric: str,
    scratch: Path,
) -> dict[str, float]:  # fmt: skip
    """``{leaf task/doc id: score}`` from the side's per-sample artefacts (a trial's
    ``benchmarks/<phase>/``, the base's ``base_benchmarks/<phase>/`` on the parent run)."""
    if side.record is not None:
        run_id, path = side.record.run_id, f"benchmarks/{phase}"
    elif side.ref == BASE:
        run_id, path = home.parent_run_id, f"base_benchmarks/{phase}"
    else:
        return {}
    directory = scratch / run_id / phase / Path(path).name  # where mlflow puts the directory
    if not directory.is_dir() and reader.download(run_id, path, directory.parent) is None:
        return {}
    leaves = [
        f for f in directory.glob("*.jsonl") if f.stem == task or f.stem.startswith(f"{task}_")
    ]
    rows = [(f.stem, json.loads(line)) for f in leaves for line in f.read_text().splitlines()]
    return {f"{leaf}/{row['doc_id']}": float(row[metric]) for leaf, row in rows
            if isinstance(row.get(metric), (int, float))}  # fmt: skip


def bench_row(
    task: str, name: str, va: float, vb: float, paired: Delta | None, *,
    chance: str | None = None,
) -> BenchmarkRow:  # fmt: skip
    """``paired``: the test on the documents both sides were scored on (None: none were)."""
    if paired is None:
        return BenchmarkRow(name, va, vb, va - vb, None, None, "-", None, task=task, chance=chance)
    return BenchmarkRow(name, va, vb, va - vb, paired.ci_low, paired.ci_high,
                        f"{paired.test_label}, {paired.n} documents", paired.significant,
                        task=task, documents=paired.n, detectable=paired.detectable,
                        chance=chance,
                        resolution=resolution_words(paired.n, paired.detectable))  # fmt: skip


def skipped_benchmarks(
    tag: str, tasks: list[str], *, scored: list[str]
) -> tuple[list[SkippedBenchmark], list[str]]:
    """One line per benchmark not compared, and the hints on how to get them, each said once.

    ``tag`` is the parent run's ``benchmarks.skipped``: ``TASK: WHY; HINT`` per skipped task,
    joined by ``"; "`` (``evals/benchmark_sources.py``); a configured task neither skipped nor
    scored for both sides gets a line of its own."""
    skipped: list[SkippedBenchmark] = []
    hints: list[str] = []
    for part in re.split(r"; (?=[\w.-]+: )", tag) if tag not in ("", "none") else []:
        task, _, reason = part.partition(": ")
        why, _, hint = reason.partition("; ")
        skipped.append(SkippedBenchmark(task, why.strip()))
        if hint and hint not in hints:
            hints.append(hint.strip())
    named = {s.task for s in skipped} | set(scored)
    skipped += [SkippedBenchmark(t, "not scored for both sides") for t in tasks if t not in named]
    return skipped, hints


# --------------------------------------------------------------------------- assembling
def assemble(
    a: Side, b: Side, *, home: SweepState, metric: str, scores: tuple[ItemScores, ItemScores],
    gathered: Gathered, samples: int,
) -> ReportContext:  # fmt: skip
    """The report from the two sides' item scores and what was gathered: no I/O."""
    deltas = {name: a_minus_b(scores[0].by_item(key), scores[1].by_item(key), metric=name)
              for name, key in ((metric, "score"), ("exact_match", "exact_match"))}  # fmt: skip
    heldout = deltas[metric]
    items = item_rows(scores, cut=gathered.cut)
    params = side_params(a), side_params(b)  # None: a side with no adapter (read once)
    groups = item_groups(items, metric=metric)
    shown = {row.id for group in groups for row in group.rows}  # generations repeat none of them
    decision, headline = decide(a, b, heldout, benchmarks=gathered.benchmarks,
                                skipped=gathered.skipped)  # fmt: skip
    return ReportContext(
        generated=utc(None), orientation=ORIENTATION, a=a.label, b=b.label,
        sides=[side_info("A", a), side_info("B", b)], sweep=home.name,
        base_model=home.base_model, metric=metric, rows=len(items), headline=headline,
        decision=decision, summary=summary_line(a.label, b.label, heldout),
        heldout_paired=heldout, heldout=heldout_rows(deltas, scores),
        benchmarks=gathered.benchmarks, benchmarks_skipped=gathered.skipped,
        benchmark_hints=gathered.hints, groups=groups,
        generations=[row for row in items if row.id not in shown][:samples],
        max_new_tokens=gathered.max_new_tokens, params=param_rows(*params),
        param_sides=[key for key, p in zip("AB", params, strict=True) if p is not None],
        cost=cost_rows(a, b), curves=gathered.curves, items=items,
    )  # fmt: skip


def a_minus_b(
    a: Mapping[str, float], b: Mapping[str, float], *, metric: str, resamples: int = 10_000
) -> Delta:
    """The paired comparison of the candidate A with the reference B: A - B."""
    from evals.power import resolution_of

    c = compare_paired(a, b, resamples=resamples)
    detectable = resolution_of(c).detectable
    label = f"McNemar p={c.p_value:.3g}" if c.test == MCNEMAR else "paired bootstrap"
    return Delta(
        metric=metric, n=c.n, mean_a=c.mean_candidate, mean_b=c.mean_reference, delta=c.delta,
        ci_low=c.ci_low, ci_high=c.ci_high, confidence=c.confidence, test=c.test,
        test_label=label, p_value=c.p_value, significant=c.significant(),
        a_better=c.candidate_better, b_better=c.reference_better, ties=c.ties,
        detectable=detectable if math.isfinite(detectable) else None,
    )  # fmt: skip


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
    evidence = (f"{d.delta:+.3f} [{d.confidence:.0%} CI {d.ci_low:+.3f}, {d.ci_high:+.3f}], "
                f"{d.a_better} of {d.n} rows better, {d.b_better} worse")  # fmt: skip
    return decision, (f"{verdict.format(*sides)} on held-out {d.metric}: {evidence}; "
                      f"{benchmark_verdict(benchmarks, skipped)}")  # fmt: skip


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
    chance = (f"; {', '.join(at_chance)} at chance for B, where no regression can show"
              if at_chance else "")  # fmt: skip
    if not resolved:
        counts = ", ".join(f"{r.task}: {r.documents or 0}" for r in blind)
        return f"too few documents to detect a benchmark regression ({counts} documents){chance}"
    worst = max(r.detectable or 0.0 for r in resolved)
    parts = [f"{r.task}: {(r.detectable or 0.0) * 100:.1f} on {r.documents} documents"
             for r in resolved]  # fmt: skip
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
    rows = [MetricRow(name, d.mean_a, d.mean_b, d.delta, d.ci_low, d.ci_high, d.test_label,
                      d.significant) for name, d in deltas.items()]  # fmt: skip
    for name in keys.LOWER_IS_BETTER:  # per-token means: no per-item pairs
        va, vb = scores[0].metrics.get(name), scores[1].metrics.get(name)
        if va is not None and vb is not None:
            rows.append(MetricRow(keys.short_name(name) + " (lower is better)", va, vb,
                                  va - vb, None, None, "token-level mean", None))  # fmt: skip
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
        "lost": lambda r: (r.delta, r.id), "wrong": lambda r: (r.a_score, r.id),
        "won": lambda r: (-r.delta, r.id),
    }  # fmt: skip
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
    names = {"r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
             "target_modules": "target_modules"}  # fmt: skip
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
        rows.append(ParamRow(name, NO_ADAPTER if pa is None else shown(va, digits),
                             NO_ADAPTER if pb is None else shown(vb, digits), differs))  # fmt: skip
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
        note = ("" if side.record else "base model: no training" if side.adapter is None
                else "trained outside the known sweeps: no cost recorded")  # fmt: skip
        rows.append(CostRow(
            side=f"{key}: {side.ref}", trial=side.record.trial_id if side.record else None,
            wall_s=metrics.get(keys.COST_WALL_SECONDS), train_s=metrics.get(keys.TRAIN_SECONDS),
            tokens=metrics.get(keys.TOKENS_TRAINED), device_s=metrics.get(keys.COST_DEVICE_SECONDS),
            device=_device(side.config), sweep=state.name if state else None,
            sweep_trials=len(state.trials) if state else None,
            sweep_device_hours=state.device_hours() if state else None, note=note,
        ))  # fmt: skip
    return rows


def _device(config: dict[str, Any]) -> str:
    resources = config.get("resources") or {}
    gpus, cpus = float(resources.get("gpu") or 0), float(resources.get("cpu") or 1)
    return f"{gpus:g} GPU" if gpus else f"{cpus:g} CPU" if config else "-"


def curves_png(a: Side, b: Side, *, home: SweepState, reader: RunReader, metric: str) -> str | None:
    """Training curves of both sides (the base model as a line), as base64 PNG; None if no
    side was trained in a sweep."""
    names = [*CURVE_METRICS, keys.heldout(metric)]
    histories = {s.label: reader.history(s.record.run_id, names) for s in (a, b) if s.record}
    if not histories:
        return None
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2))
    for ax, name in zip(axes, names, strict=True):
        for label, history in histories.items():
            if name in history:
                ax.plot(*zip(*history[name], strict=True), marker="o", label=label)
        if name in home.base_metrics and name != keys.TRAIN_LOSS:
            ax.axhline(home.base_metrics[name], color="grey", linestyle="--", label="base model")
        ax.set(title=name, xlabel="optimizer step")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


# --------------------------------------------------------------------------- judge, humans, errors
PREFERENCE_TITLES = {"judge": "LLM judge (pairwise, both orders)", "human": "Human raters (blind)"}
HOW_TO_GET = {
    "judge": "sweep compare {a} {b} --judge, or sweep judge {a} {b}",
    "human": "sweep human export {a} {b} --out DIR, have it rated, then sweep human import DIR",
}


def with_preferences(
    context: ReportContext, pair: PairedOutputs, *, errors_link: str | None
) -> ReportContext:
    """The report with the judge's and the raters' evidence stored for the pair, and the
    evidence table (held-out, judge, human) the gate's ``promote.require`` reads."""
    from dataclasses import replace

    sections = []
    for kind in PREFERENCE_KINDS:
        found = load_evidence(pair.home, pair.a, pair.b, kind)
        if found is not None:
            sections.append(preference_section(kind, found.summary(), source=found.source,
                                               details=found.details, run_id=found.run_id))  # fmt: skip
    evidence = evidence_rows(context.heldout_paired, sections, refs=(pair.a.ref, pair.b.ref))
    require = (home_config(pair.home).get("promote") or {}).get("require") or ["heldout"]
    return replace(context, preferences=sections, errors_link=errors_link, evidence=evidence,
                   gate=gate_line(evidence, require=list(require)))  # fmt: skip


def gate_line(evidence: list[EvidenceRow], *, require: list[str]) -> str:
    """The promotion gate's rule applied to A over B: each required evidence must prefer A,
    significantly (sweeps/release/promote.py applies it to a candidate over the champion)."""
    failing = [row.kind for row in evidence
               if row.kind in require and not (row.significant and row.favours == "A")]  # fmt: skip
    verdict = ("would pass" if not failing else
               f"would refuse (not significantly for A: {', '.join(failing)})")  # fmt: skip
    return (
        f"If B were the champion, promoting A under this sweep's promote.require "
        f"({', '.join(require)}) {verdict}."
    )


def preference_section(
    kind: str, summary: PreferenceSummary, *, source: str, details: Mapping[str, Any], run_id: str
) -> PreferenceSection:
    notes = judge_notes(details) if kind == "judge" else human_notes(details)
    unread = [UnreadRow(r["id"], [clip(a, 300) for a in r.get("answers", [])])
              for r in details.get("unreadable", [])]  # fmt: skip
    return PreferenceSection(kind, PREFERENCE_TITLES[kind], source, summary, summary.describe(),
                             preference_verdict(summary), notes, unread, run_id)  # fmt: skip


def judge_notes(details: Mapping[str, Any]) -> list[str]:
    """What to know about the judge's run: rows left out, answers cut, its biases."""
    notes = []
    if details.get("rows", 0) < details.get("of_rows", 0):
        notes.append(f"Only the first {details['rows']} of {details['of_rows']} held-out rows "
                     "were judged (judge.rows)")  # fmt: skip
    if details.get("cut"):
        notes.append(f"{details['cut']} answers reached the judge's max_tokens before a "
                     "verdict line (judge.max_tokens)")  # fmt: skip
    if details.get("decisive"):
        notes.append(f"Position bias: {details['first_rate']:.0%} of {details['decisive']} "
                     "decisive verdicts chose the answer shown first (about 50% without it)")  # fmt: skip
    if details.get("agreement_rows"):
        notes.append(f"The judge gave the same verdict in both orders on "
                     f"{details['self_agreement']:.0%} of {details['agreement_rows']} rows "
                     "(low agreement: position bias, and such a judge's wins cancel to ties)")  # fmt: skip
    return notes


def human_notes(details: Mapping[str, Any]) -> list[str]:
    """The ratings behind the raters' verdict, and how far the raters (and the judge) agree."""
    raters = details.get("raters") or []
    notes = [f"{details.get('ratings', 0)} ratings by {len(raters)} rater(s); "
             f"{details.get('not_rated', 0)} left unrated"]  # fmt: skip
    for name, who in (("rater_agreement", "between raters"),
                      ("judge_agreement", "humans vs the judge")):  # fmt: skip
        agreement = details.get(name) or {}
        if agreement.get("kappa") is not None:
            notes.append(f"Cohen's kappa {who}: {agreement['kappa']:.2f} on "
                         f"{agreement.get('pairs', 0)} rows")  # fmt: skip
    return notes


def preference_verdict(summary: PreferenceSummary) -> str:
    if summary.n == 0:
        return "no verdict could be read"
    if not summary.significant:
        return "no significant preference"
    return f"{summary.favours} preferred"


def evidence_rows(
    heldout: Delta, sections: list[PreferenceSection], *, refs: tuple[str, str]
) -> list[EvidenceRow]:
    direction = "A better" if heldout.delta > 0 else "B better" if heldout.delta < 0 else "equal"
    rows = [EvidenceRow("heldout", f"{direction} on {heldout.metric} ({heldout.delta:+.3f}, "
                        f"{'significant' if heldout.significant else 'not significant'})",
                        heldout.significant, direction.split()[0] if heldout.delta else "")]  # fmt: skip
    found = {s.kind: s for s in sections}
    for kind in PREFERENCE_KINDS:
        section = found.get(kind)
        if section is None:
            how = HOW_TO_GET[kind].format(a=shlex.quote(refs[0]), b=shlex.quote(refs[1]))
            rows.append(EvidenceRow(kind, f"not gathered: {how}", None))
        else:
            summary = section.summary
            rows.append(EvidenceRow(kind, f"{section.verdict}: {section.described}",
                                    summary.significant, summary.favours))  # fmt: skip
    return rows


def write_a_errors(pair: PairedOutputs, out_dir: Path) -> str | None:
    """A's wrong rows (``sweep errors``), beside the report; the link to their summary."""
    if pair.a.adapter is None or pair.a.state is None:
        return None
    from sweeps.ab.error_analysis import analyse_errors, has_label_column, write_errors

    analysis = analyse_errors(pair.scores[0].items, metric=pair.spec.task_metric,
                              label_field_present=has_label_column(pair.spec))  # fmt: skip
    paths = write_errors(analysis, out_dir=out_dir / "errors", title=f"A: {pair.a.label}")
    return str(paths["errors.md"].relative_to(out_dir))


# --------------------------------------------------------------------------- render, write, log
def render(context: Mapping[str, object]) -> tuple[str, str]:
    """The HTML report and the Markdown summary, from the jinja2 templates."""
    env = template_env()
    env.filters["num"] = lambda v, fmt="{:.4f}": "-" if v is None else fmt.format(v)
    env.filters["cell"] = lambda v: " ".join(str(v).split()).replace("|", "\\|")
    return (env.get_template("compare.html.j2").render(**context),
            env.get_template("compare.md.j2").render(**context))  # fmt: skip


def write_report(context: ReportContext, out_dir: Path) -> tuple[Path, Path]:
    """report.html, report.md, curves.png and report.json in ``out_dir``: the three from the
    same data, so they agree on which side is which."""
    import base64

    data = context.to_dict()
    html, markdown = render(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.html").write_text(html)
    (out_dir / "report.md").write_text(markdown)
    if context.curves:
        (out_dir / "curves.png").write_bytes(base64.b64decode(context.curves))
    data.pop("curves")
    (out_dir / "report.json").write_text(json.dumps(data, indent=2, default=str))
    return out_dir / "report.html", out_dir / "report.md"


def log_report(context: ReportContext, out_dir: Path, *, home: SweepState, mlflow_uri: str) -> str:
    """A ``compare`` run in the sweep's experiment, with the report as its artefacts."""
    from sweeps.tracking.mlflow_facade import SweepTracker

    d = context.heldout_paired
    tracker = SweepTracker(mlflow_uri, experiment_name(home))
    metrics = {keys.HELDOUT_DELTA: d.delta, keys.HELDOUT_DELTA_CI_LOW: d.ci_low,
               keys.HELDOUT_DELTA_CI_HIGH: d.ci_high, keys.HELDOUT_WINS: d.a_better,
               keys.HELDOUT_LOSSES: d.b_better}  # fmt: skip
    if d.p_value is not None:
        metrics[keys.HELDOUT_DELTA_P_VALUE] = d.p_value
    run_id = tracker.log_run(
        f"compare {context.a} vs {context.b}"[:250], params={"a": context.a, "b": context.b,
        "metric": context.metric, "rows": context.rows},
        metrics=metrics, tags={"lora_sweep.kind": "compare", "lora_sweep.sweep": home.name,
        "compare.decision": context.decision, "compare.headline": context.headline[:5000]},
        artifacts={},
    )  # fmt: skip
    tracker.log_artifact_dirs(run_id, {"report": out_dir})
    return run_id
