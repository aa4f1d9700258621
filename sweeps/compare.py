"""``sweep compare A B``: an A/B report on two adapters (or an adapter and the base model).

A and B may be ``base``, a registry alias or version (``champion``, ``NAME@ALIAS``,
``models:/NAME/VERSION``), a sweep (its best trial), ``SWEEP/TRIAL``, a trial's run id, or an
adapter directory. B is the reference: a delta is A minus B, so ``sweep compare champion base``
shows the champion's gain. Both are scored on every held-out row of the sweep they come from
(``sweeps/scoring.py``, cached), and compared item by item (``evals/paired.py``).

The report is self-contained HTML (the plot embedded) plus a Markdown summary, rendered from
jinja2 templates in ``sweeps/templates/``. It holds the hyperparameter diff; held-out and
benchmark metrics side by side, with deltas and 95% CIs; per-item wins and losses; side-by-side
generations; training curves; and cost. It is written to ``--out`` and logged to MLflow as the
artefacts of a ``compare`` run in the sweep's experiment.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evals.paired import MCNEMAR, PairedComparison, compare_paired
from sweeps.config import ConfigError
from sweeps.refs import resolve_adapter
from sweeps.scoring import ItemScores, load_spec, score_every_row
from sweeps.state import SweepState, TrialRecord, list_sweeps, load_state

BASE = "base"
TEMPLATES = Path(__file__).parent / "templates"
CURVE_METRICS = ("train/loss", "heldout/loss")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Side:
    """One side of the comparison: an adapter from a sweep (or a directory), or the base."""

    ref: str
    label: str
    adapter: Path | None = None
    base_model: str = ""  # what the adapter records it was trained on
    state: SweepState | None = None
    record: TrialRecord | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    html: Path
    markdown: Path
    run_id: str
    heldout: PairedComparison
    metric: str


def compare(
    a: str, b: str, *, state_dir: Path, mlflow_uri: str, out_dir: Path | None = None,
    samples: int = 8, progress: Say = print,
) -> Report:  # fmt: skip
    """Score A and B on the same held-out rows, build the report, write it and log it."""
    side_a, side_b = (resolve_side(r, state_dir=state_dir, mlflow_uri=mlflow_uri) for r in (a, b))
    home = check_comparable(side_a, side_b)
    spec = load_spec(home)
    for side in (side_a, side_b):
        check_same_base(side, home=home, model_path=spec.model_path)
    if side_a.adapter is not None and side_a.adapter == side_b.adapter:
        raise ConfigError(f"{a} and {b} are the same adapter ({side_a.adapter})")
    scores = score_every_row(spec, {side_a.label: side_a.adapter, side_b.label: side_b.adapter},
                             progress=progress)  # fmt: skip
    context = report_context(side_a, side_b, home=home, spec=spec, mlflow_uri=mlflow_uri,
                             scores=(scores[side_a.label], scores[side_b.label]), samples=samples)  # fmt: skip
    out_dir = out_dir or Path("reports") / f"{slug(a)}-vs-{slug(b)}"
    html, markdown = write_report(context, out_dir)
    run_id = log_report(context, out_dir, home=home, mlflow_uri=mlflow_uri)
    return Report(html, markdown, run_id, context["heldout_paired"], spec.task_metric)


# --------------------------------------------------------------------------- the two sides
def resolve_side(ref: str, *, state_dir: Path, mlflow_uri: str) -> Side:
    if ref == BASE:
        return Side(ref, "base model")
    adapter = resolve_adapter(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
    label = adapter.describe() if ref == adapter.describe() else f"{ref} ({adapter.describe()})"
    if not adapter.sweep or adapter.sweep not in list_sweeps(state_dir):
        return Side(ref, label, adapter.path, adapter.base_model)
    state = load_state(adapter.sweep, state_dir=state_dir)
    config = yaml.safe_load((state.path / "config.yaml").read_text())
    return Side(ref, label, adapter.path, adapter.base_model, state,
                state.trials.get(adapter.trial_id), config)  # fmt: skip


def check_comparable(a: Side, b: Side) -> SweepState:
    """The sweep whose held-out set both are scored on; both sides must share its base model."""
    home = a.state or b.state
    if home is None:
        raise ConfigError(
            f"{a.ref} and {b.ref}: at least one side must come from a sweep (its held-out set, "
            "base model and settings are what the two are compared on)"
        )
    for side in (a, b):
        if side.state is not None and side.state.base_model_digest != home.base_model_digest:
            raise ConfigError(
                f"{side.ref} was trained on another base model ({side.state.base_model}) than "
                f"{home.name} ({home.base_model}): the two cannot be compared on one base"
            )
    return home


def check_same_base(side: Side, *, home: SweepState, model_path: str) -> None:
    """An adapter from outside the sweep must have been trained on the sweep's base model."""
    if side.adapter is None or side.state is not None:
        return
    record = side.adapter.parent / "base_model.json"  # a registry version's record of its base
    if record.is_file():
        same = json.loads(record.read_text()).get("sha256") == home.base_model_digest
    else:
        names = (home.base_model, model_path)
        same = side.base_model in names or Path(side.base_model).resolve() == Path(model_path)
    if not same:
        raise ConfigError(
            f"{side.ref}: the adapter was trained on {side.base_model}, not on the base model of "
            f"sweep {home.name} ({home.base_model}); compare adapters of one base model"
        )


def slug(ref: str) -> str:
    """A file-name-safe form of a reference (no separators, no ``..``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", ref).strip("_")[:60] or "x"


# --------------------------------------------------------------------------- the report's data
def report_context(
    a: Side, b: Side, *, home: SweepState, spec: Any, mlflow_uri: str,
    scores: tuple[ItemScores, ItemScores], samples: int,
) -> dict[str, Any]:  # fmt: skip
    from sweeps._tracking import RunReader

    reader = RunReader(mlflow_uri)
    metric = spec.task_metric
    parent = reader.summary(home.parent_run_id)  # the base model's scores, skip reasons
    with tempfile.TemporaryDirectory(prefix="lora-sweep-compare-") as tmp:
        benchmarks = benchmark_rows(a, b, home=home, reader=reader, parent=parent,
                                    scratch=Path(tmp))  # fmt: skip
    paired = {  # B is the reference: each delta is A - B
        name: compare_paired(scores[1].by_item(key), scores[0].by_item(key))
        for name, key in ((metric, "score"), ("exact_match", "exact_match"))
    }
    return {
        "a": a.label, "b": b.label, "sweep": home.name, "base_model": home.base_model,
        "metric": metric, "rows": len(scores[0].items), "heldout_paired": paired[metric],
        "summary": summary_line(a.label, b.label, metric, paired[metric]),
        "params": param_rows(a, b),
        "heldout": heldout_rows(paired, scores),
        "benchmarks": benchmarks,
        "benchmarks_skipped": parent["tags"].get("benchmarks.skipped", "none"),
        "changed": changed_items(scores, limit=10),
        "generations": generation_rows(scores, limit=samples),
        "curves": curves_png(a, b, home=home, reader=reader, metric=metric),
        "cost": cost_rows(a, b, reader=reader),
    }  # fmt: skip


def summary_line(a: str, b: str, metric: str, paired: PairedComparison) -> str:
    """``paired`` compares A (its ``b`` side) with the reference B (its ``a`` side)."""
    verdict = "significant" if paired.significant() else "not significant"
    return (
        f"{a} vs {b} on {paired.n} held-out rows: {metric} {paired.mean_b:.4f} vs "
        f"{paired.mean_a:.4f}, delta {paired.delta:+.4f} (95% CI {paired.ci_low:+.4f} to "
        f"{paired.ci_high:+.4f}; {_test(paired)}; {verdict}). A better on {paired.wins} rows, "
        f"worse on {paired.losses}, tied on {paired.ties}."
    )


def param_rows(a: Side, b: Side) -> list[dict[str, Any]]:
    """Every hyperparameter of either side, with both values; differing ones first."""
    pa = a.record.params if a.record else {}
    pb = b.record.params if b.record else {}
    rows = [{"name": k, "a": _shown(pa.get(k)), "b": _shown(pb.get(k)), "differs": pa.get(k) !=
             pb.get(k)} for k in sorted(set(pa) | set(pb))]  # fmt: skip
    return sorted(rows, key=lambda r: not r["differs"])


def heldout_rows(
    paired: dict[str, PairedComparison], scores: tuple[ItemScores, ItemScores]
) -> list[dict[str, Any]]:
    rows = [{"name": name, "a": c.mean_b, "b": c.mean_a, "delta": c.delta, "ci_low": c.ci_low,
             "ci_high": c.ci_high, "test": _test(c), "significant": c.significant()}
            for name, c in paired.items()]  # fmt: skip
    for name in ("heldout/loss", "heldout/perplexity"):  # per-token means: no per-item pairs
        va, vb = scores[0].metrics.get(name), scores[1].metrics.get(name)
        if va is not None and vb is not None:
            rows.append({"name": name.removeprefix("heldout/") + " (lower is better)", "a": va,
                         "b": vb, "delta": va - vb, "ci_low": None, "ci_high": None,
                         "test": "token-level mean", "significant": None})  # fmt: skip
    return rows


def benchmark_rows(
    a: Side, b: Side, *, home: SweepState, reader: Any, parent: dict[str, Any], scratch: Path
) -> list[dict[str, Any]]:
    """Each benchmark both sides were scored on (the full sets when both have them), with the
    paired test on the documents both were scored on, from their per-sample artefacts."""
    from evals.objective import primary_metric

    benchmarks = home_config(home).get("benchmarks") or {}
    tasks, overrides = benchmarks.get("tasks") or [], benchmarks.get("metrics") or {}
    base_metrics = {k.removeprefix("base/"): v for k, v in parent["metrics"].items()}
    rows = []
    for task in tasks:
        for phase in ("full", "proxy"):
            va, vb = (_bench(s, base_metrics, phase, task) for s in (a, b))
            if not (va and vb):
                continue
            name = primary_metric(task, va, overrides)
            if name in va and name in vb:
                docs = [_document_scores(s, home=home, reader=reader, phase=phase, task=task,
                                         metric=name, scratch=scratch) for s in (a, b)]  # fmt: skip
                paired = (compare_paired(docs[1], docs[0], resamples=2000)
                          if set(docs[0]) & set(docs[1]) else None)  # fmt: skip
                rows.append(_bench_row(f"{task} ({name}, {phase})", va[name], vb[name], paired))
            break
    return rows


def _bench(side: Side, base: dict[str, float], phase: str, task: str) -> dict[str, float]:
    source = side.record.metrics if side.record else base if side.ref == BASE else {}
    prefix = f"bench/{phase}/{task}/"
    return {k.removeprefix(prefix): v for k, v in source.items() if k.startswith(prefix)}


def _document_scores(
    side: Side, *, home: SweepState, reader: Any, phase: str, task: str, metric: str,
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


def _bench_row(name: str, va: float, vb: float, paired: PairedComparison | None) -> dict[str, Any]:
    return {"name": name, "a": va, "b": vb, "delta": va - vb,
            "ci_low": paired.ci_low if paired else None,
            "ci_high": paired.ci_high if paired else None,
            "test": f"{_test(paired)}, {paired.n} documents" if paired else "-"}  # fmt: skip


def changed_items(scores: tuple[ItemScores, ItemScores], *, limit: int) -> dict[str, Any]:
    """The rows where A and B differ most, and A's win/loss/tie counts."""
    pairs = list(zip(scores[0].items, scores[1].items, strict=True))
    diffs = [(float(ia["score"]) - float(ib["score"]), ia, ib) for ia, ib in pairs]
    changed = sorted((d for d in diffs if d[0] != 0), key=lambda d: -abs(d[0]))[:limit]
    return {
        "wins": sum(d > 0 for d, _, _ in diffs), "losses": sum(d < 0 for d, _, _ in diffs),
        "ties": sum(d == 0 for d, _, _ in diffs),
        "rows": [_item_row(ia, ib) | {"delta": d} for d, ia, ib in changed],
    }  # fmt: skip


def generation_rows(scores: tuple[ItemScores, ItemScores], *, limit: int) -> list[dict[str, Any]]:
    pairs = zip(scores[0].items[:limit], scores[1].items[:limit], strict=True)
    return [_item_row(ia, ib) for ia, ib in pairs]


def _item_row(ia: dict[str, Any], ib: dict[str, Any]) -> dict[str, Any]:
    return {"id": ia["id"], "prompt": ia["prompt"], "reference": ia["reference"],
            "a": ia["prediction"], "a_score": ia["score"], "b": ib["prediction"],
            "b_score": ib["score"]}  # fmt: skip


def curves_png(a: Side, b: Side, *, home: SweepState, reader: Any, metric: str) -> str | None:
    """Training curves of both sides (the base model as a line), as base64 PNG; None if no
    side was trained in a sweep."""
    keys = [*CURVE_METRICS, f"heldout/{metric}"]
    histories = {s.label: reader.history(s.record.run_id, keys) for s in (a, b) if s.record}
    if not histories:
        return None
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2))
    for ax, key in zip(axes, keys, strict=True):
        for label, history in histories.items():
            if key in history:
                ax.plot(*zip(*history[key], strict=True), marker="o", label=label)
        if key in home.base_metrics and key != "train/loss":
            ax.axhline(home.base_metrics[key], color="grey", linestyle="--", label="base model")
        ax.set(title=key, xlabel="optimizer step")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def cost_rows(a: Side, b: Side, *, reader: Any) -> list[dict[str, Any]]:
    """Wall time, tokens trained and device-seconds of each trained side."""
    rows = []
    for side in (a, b):
        if side.record is None:
            rows.append({"side": side.label, "wall_s": None, "train_s": None, "tokens": None,
                         "device_s": None, "device": "-"})  # fmt: skip
            continue
        summary = reader.summary(side.record.run_id)
        resources = side.config.get("resources") or {}
        gpus, cpus = float(resources.get("gpu") or 0), float(resources.get("cpu") or 1)
        wall = summary["wall_seconds"]
        rows.append({
            "side": side.label, "wall_s": wall,
            "train_s": summary["metrics"].get("train/seconds"),
            "tokens": summary["metrics"].get("tokens_trained"),
            "device_s": wall * (gpus or cpus) if wall is not None else None,
            "device": f"{gpus:g} GPU" if gpus else f"{cpus:g} CPU",
        })  # fmt: skip
    return rows


def home_config(state: SweepState) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((state.path / "config.yaml").read_text())
    return loaded


def _shown(value: Any) -> str:
    return (
        "-"
        if value is None
        else json.dumps(value)
        if isinstance(value, (list, dict))
        else str(value)
    )


def _test(c: PairedComparison) -> str:
    return f"McNemar p={c.p_value:.3g}" if c.test == MCNEMAR else "paired bootstrap"


# --------------------------------------------------------------------------- render, write, log
def render(context: dict[str, Any]) -> tuple[str, str]:
    """The HTML report and the Markdown summary, from the jinja2 templates."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip
    env.filters["num"] = lambda v, fmt="{:.4f}": "-" if v is None else fmt.format(v)
    env.filters["cell"] = lambda v: " ".join(str(v).split()).replace("|", "\\|")
    return (env.get_template("compare.html.j2").render(**context),
            env.get_template("compare.md.j2").render(**context))  # fmt: skip


def write_report(context: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """report.html, report.md, curves.png and report.json in ``out_dir``."""
    import base64

    html, markdown = render(context)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.html").write_text(html)
    (out_dir / "report.md").write_text(markdown)
    if context["curves"]:
        (out_dir / "curves.png").write_bytes(base64.b64decode(context["curves"]))
    data = {k: v for k, v in context.items() if k not in ("curves", "heldout_paired")}
    data["heldout_paired"] = context["heldout_paired"].to_json()
    (out_dir / "report.json").write_text(json.dumps(data, indent=2, default=str))
    return out_dir / "report.html", out_dir / "report.md"


def log_report(context: dict[str, Any], out_dir: Path, *, home: SweepState, mlflow_uri: str) -> str:
    """A ``compare`` run in the sweep's experiment, with the report as its artefacts."""
    from sweeps._tracking import SweepTracker

    config = home_config(home)
    experiment = (config.get("tracking") or {}).get("experiment") or config.get("name") or home.name
    paired: PairedComparison = context["heldout_paired"]
    tracker = SweepTracker(mlflow_uri, experiment)
    metrics = {"heldout/delta": paired.delta, "heldout/delta_ci_low": paired.ci_low,
               "heldout/delta_ci_high": paired.ci_high, "heldout/wins": paired.wins,
               "heldout/losses": paired.losses}  # fmt: skip
    if paired.p_value is not None:
        metrics["heldout/delta_p_value"] = paired.p_value
    run_id = tracker.log_run(
        f"compare {context['a']} vs {context['b']}"[:250], params={"a": context["a"],
        "b": context["b"], "metric": context["metric"], "rows": context["rows"]},
        metrics=metrics, tags={"lora_sweep.kind": "compare", "lora_sweep.sweep": home.name},
        artifacts={},
    )  # fmt: skip
    tracker.log_artifact_dirs(run_id, {"report": out_dir})
    return run_id
