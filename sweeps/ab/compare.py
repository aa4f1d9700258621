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

This module gathers what the report reads (MLflow, the sweep's files), then renders, writes and
logs it; the report's data is ``compare_report.py``, its assembly and verdict
``compare_assemble.py``, the judge's and raters' evidence ``compare_evidence.py``.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from evals import metric_keys as keys
from sweeps.ab.compare_assemble import a_minus_b, assemble
from sweeps.ab.compare_evidence import with_preferences
from sweeps.ab.compare_report import (
    BenchmarkRow,
    Delta,
    Gathered,
    Report,
    ReportContext,
    SkippedBenchmark,
    resolution_words,
)
from sweeps.console import Say
from sweeps.report_templates import template_env
from sweeps.serving.scoring import all_rows
from sweeps.serving.sides import (
    BASE,
    PairedOutputs,
    Side,
    cut_outputs,
    experiment_name,
    home_config,
    paired_outputs,
    slug,
)
from sweeps.tracking.state import SweepState

if TYPE_CHECKING:
    from sweeps.ab.judge import JudgeSettings
    from sweeps.tracking.mlflow_facade import RunReader

CURVE_METRICS = (keys.TRAIN_LOSS, keys.HELDOUT_LOSS)


def compare(
    a: str,
    b: str,
    *,
    state_dir: Path,
    mlflow_uri: str,
    out_dir: Path | None = None,
    samples: int = 8,
    progress: Say = print,
    judge: JudgeSettings | None = None,
) -> Report:
    """Score A and B on the same held-out rows, build the report, write it and log it.
    ``judge``: ask the LLM judge too (cached); stored judge and human evidence is shown anyway."""
    judging = None
    if judge is not None:  # checked before anything is scored
        from sweeps.ab.judge import make_asker
        from sweeps.ab.judge_pairs import judge_paired

        judging = judge, make_asker(judge, state_dir=state_dir, mlflow_uri=mlflow_uri)
    pair = paired_outputs(a, b, state_dir=state_dir, mlflow_uri=mlflow_uri, progress=progress)
    if judging is not None:
        settings, asker = judging
        judge_paired(pair, mlflow_uri=mlflow_uri, settings=settings, asker=asker, progress=progress)
    out_dir = out_dir or Path("reports") / f"{slug(a)}-vs-{slug(b)}"
    context = report_context(pair, mlflow_uri=mlflow_uri, samples=samples)
    context = with_preferences(context, pair, errors_link=write_a_errors(pair, out_dir))
    html, markdown = write_report(context, out_dir)
    run_id = log_report(context, out_dir, home=pair.home, mlflow_uri=mlflow_uri)
    return Report(
        html, markdown, run_id, context.heldout_paired, pair.spec.task_metric, context.headline
    )


# --------------------------------------------------------------------------- gathering
def report_context(pair: PairedOutputs, *, mlflow_uri: str, samples: int) -> ReportContext:
    """The report's data: what MLflow and the sweep hold, then :func:`assemble`."""
    from sweeps.tracking.mlflow_facade import RunReader

    a, b, home, spec, scores = pair.a, pair.b, pair.home, pair.spec, pair.scores

    reader = RunReader(mlflow_uri)
    parent = reader.summary(home.parent_run_id)  # the base model's scores, skip reasons
    with tempfile.TemporaryDirectory(prefix="lora-sweep-compare-") as tmp:
        base = keys.under_group(keys.BASE, parent["metrics"])  # the base model's scores
        benchmarks = benchmark_rows(a, b, home=home, reader=reader, base=base, scratch=Path(tmp))
    tasks = (home_config(home).get("benchmarks") or {}).get("tasks") or []
    skipped, hints = skipped_benchmarks(
        parent["tags"].get("benchmarks.skipped", "none"), tasks, scored=[r.task for r in benchmarks]
    )
    limit = all_rows(spec).evaluation.max_new_tokens  # what scoring used
    gathered = Gathered(
        benchmarks=benchmarks,
        skipped=skipped,
        hints=hints,
        curves=curves_png(a, b, home=home, reader=reader, metric=spec.task_metric),
        max_new_tokens=limit,
        cut=cut_outputs(spec, scores, limit=limit),
    )
    return assemble(
        a, b, home=home, metric=spec.task_metric, scores=scores, gathered=gathered, samples=samples
    )


def benchmark_rows(
    a: Side,
    b: Side,
    *,
    home: SweepState,
    reader: RunReader,
    base: Mapping[str, float],
    scratch: Path,
) -> list[BenchmarkRow]:
    """Each benchmark both sides were scored on (the full sets when both have them), with the
    paired test on the documents both were scored on, from their per-sample artefacts;
    ``base``: the base model's metrics (the parent run's ``base/...``, without the prefix)."""
    from evals.objective import chance_note, primary_metric

    benchmarks = home_config(home).get("benchmarks") or {}
    tasks, overrides = benchmarks.get("tasks") or [], benchmarks.get("metrics") or {}
    documents = functools.partial(_document_scores, home=home, reader=reader, scratch=scratch)
    rows = []
    for task in tasks:
        for phase in (keys.FULL, keys.PROXY):
            va, vb = (_bench(s, base, phase, task) for s in (a, b))
            if not (va and vb):
                continue
            name = primary_metric(task, va, overrides)
            if name in va and name in vb:
                docs = [documents(s, phase=phase, task=task, metric=name) for s in (a, b)]
                paired = (
                    a_minus_b(docs[0], docs[1], metric=name, resamples=2000)
                    if set(docs[0]) & set(docs[1])
                    else None
                )
                chance = chance_note(task, vb[name], vb.get(f"{name}_stderr"))
                rows.append(
                    bench_row(
                        task, f"{task} ({name}, {phase})", va[name], vb[name], paired, chance=chance
                    )
                )
            break
    return rows


def _bench(side: Side, base: Mapping[str, float], phase: str, task: str) -> dict[str, float]:
    """What a side logged for ``task`` in ``phase``, by statistic (the base model's: ``base``)."""
    source = side.record.metrics if side.record else base if side.ref == BASE else {}
    return keys.task_stats(source, phase=phase, task=task)


def _document_scores(
    side: Side,
    *,
    home: SweepState,
    reader: RunReader,
    phase: str,
    task: str,
    metric: str,
    scratch: Path,
) -> dict[str, float]:
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
    return {
        f"{leaf}/{row['doc_id']}": float(row[metric])
        for leaf, row in rows
        if isinstance(row.get(metric), (int, float))
    }


def bench_row(
    task: str,
    name: str,
    va: float,
    vb: float,
    paired: Delta | None,
    *,
    chance: str | None = None,
) -> BenchmarkRow:
    """``paired``: the test on the documents both sides were scored on (None: none were)."""
    if paired is None:
        return BenchmarkRow(name, va, vb, va - vb, None, None, "-", None, task=task, chance=chance)
    return BenchmarkRow(
        name,
        va,
        vb,
        va - vb,
        paired.ci_low,
        paired.ci_high,
        f"{paired.test_label}, {paired.n} documents",
        paired.significant,
        task=task,
        documents=paired.n,
        detectable=paired.detectable,
        chance=chance,
        resolution=resolution_words(paired.n, paired.detectable),
    )


def skipped_benchmarks(
    tag: str, tasks: list[str], *, scored: list[str]
) -> tuple[list[SkippedBenchmark], list[str]]:
    """One line per benchmark not compared, and the hints on how to get them, each said once.

    ``tag`` is the parent run's ``benchmarks.skipped``: ``TASK: WHY; HINT`` per skipped task,
    joined by ``"; "`` (``evals/benchmark_sources.py``); a configured task neither skipped nor
    scored for both sides gets a line of its own. A task's line starts at a configured task's
    name, and its hint follows its last ``"; "``: an error quoted in WHY may hold either."""
    skipped: list[SkippedBenchmark] = []
    hints: list[str] = []
    starts = "|".join(map(re.escape, sorted(tasks, key=len, reverse=True))) or r"[\w.-]+"
    for part in re.split(rf"; (?=(?:{starts}): )", tag) if tag not in ("", "none") else []:
        task, _, reason = part.partition(": ")
        why, _, hint = reason.rpartition("; ") if "; " in reason else (reason, "", "")
        skipped.append(SkippedBenchmark(task, why.strip()))
        if hint and hint not in hints:
            hints.append(hint.strip())
    named = {s.task for s in skipped} | set(scored)
    skipped += [SkippedBenchmark(t, "not scored for both sides") for t in tasks if t not in named]
    return skipped, hints


# --------------------------------------------------------------------------- training curves
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


# --------------------------------------------------------------------------- errors
def write_a_errors(pair: PairedOutputs, out_dir: Path) -> str | None:
    """A's wrong rows (``sweep errors``), beside the report; the link to their summary."""
    if pair.a.adapter is None or pair.a.state is None:
        return None
    from sweeps.ab.error_analysis import analyse_errors, has_label_column, write_errors

    analysis = analyse_errors(
        pair.scores[0].items,
        metric=pair.spec.task_metric,
        label_field_present=has_label_column(pair.spec),
    )
    paths = write_errors(analysis, out_dir=out_dir / "errors", title=f"A: {pair.a.label}")
    return str(paths["errors.md"].relative_to(out_dir))


# --------------------------------------------------------------------------- render, write, log
def render(context: Mapping[str, object]) -> tuple[str, str]:
    """The HTML report and the Markdown summary, from the jinja2 templates."""
    env = template_env()
    env.filters["num"] = lambda v, fmt="{:.4f}": "-" if v is None else fmt.format(v)
    env.filters["cell"] = lambda v: " ".join(str(v).split()).replace("|", "\\|")
    return (
        env.get_template("compare.html.j2").render(**context),
        env.get_template("compare.md.j2").render(**context),
    )


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
    metrics = {
        keys.HELDOUT_DELTA: d.delta,
        keys.HELDOUT_DELTA_CI_LOW: d.ci_low,
        keys.HELDOUT_DELTA_CI_HIGH: d.ci_high,
        keys.HELDOUT_WINS: d.a_better,
        keys.HELDOUT_LOSSES: d.b_better,
    }
    if d.p_value is not None:
        metrics[keys.HELDOUT_DELTA_P_VALUE] = d.p_value
    run_id = tracker.log_run(
        f"compare {context.a} vs {context.b}"[:250],
        params={"a": context.a, "b": context.b, "metric": context.metric, "rows": context.rows},
        metrics=metrics,
        tags={
            "lora_sweep.kind": "compare",
            "lora_sweep.sweep": home.name,
            "compare.decision": context.decision,
            "compare.headline": context.headline[:5000],
        },
        artifacts={},
    )
    tracker.log_artifact_dirs(run_id, {"report": out_dir})
    return run_id
