"""The data report: counts per step, examples of what each step removed or changed, the rejected
rows, and length histograms (HTML with the plot embedded, and Markdown)."""

from __future__ import annotations

import base64
import io

from sweeps.prepare._options import PrepareOptions, PrepareResult
from sweeps.prepare._records import Record, StepResult
from sweeps.report_templates import template_env

EXAMPLES_PER_STEP = 3


def render_report(
    result: PrepareResult, *, options: PrepareOptions, before: list[Record], after: list[Record]
) -> tuple[str, str, bytes]:
    """HTML, Markdown and the histogram PNG (lengths of ``before`` the steps and ``after``)."""

    png = length_histograms(before, after)
    context = {
        "inputs": result.manifest.get("inputs", []),
        "steps": [step_row(s) for s in result.steps],
        "train": len(result.train),
        "heldout": len(result.heldout),
        "rejected": [
            {"where": r.where, "reason": why, "row": r.text} for r, why in result.rejected
        ],
        "histogram": base64.b64encode(png).decode(),
        "outputs": result.manifest.get("outputs", {}),
        "benchmark_files": result.manifest.get("benchmark_files", []),
    }
    env = template_env()
    env.filters["cell"] = lambda v: " ".join(str(v).split()).replace("|", "\\|")[:200]
    return (
        env.get_template("prepare.html.j2").render(**context),
        env.get_template("prepare.md.j2").render(**context),
        png,
    )


def step_row(step: StepResult) -> dict[str, object]:
    removed = [
        {"where": r.where, "reason": why, "text": _preview(r)}
        for r, why in step.removed[:EXAMPLES_PER_STEP]
    ]
    changed = [
        {"where": a.where, **_first_change(a, b)} for a, b in step.changed[:EXAMPLES_PER_STEP]
    ]
    return {
        "name": step.name,
        "enabled": step.enabled,
        "rows_in": step.rows_in,
        "rows_out": step.rows_out,
        "removed_count": len(step.removed),
        "changed_count": len(step.changed),
        "counts": step.counts,
        "removed": removed,
        "changed": changed,
    }


def _preview(record: Record) -> str:
    return " | ".join(record.texts())[:400]


def _first_change(before: Record, after: Record) -> dict[str, str]:
    for old, new in zip(before.texts(), after.texts(), strict=True):
        if old != new:
            return {"before": old[:400], "after": new[:400]}
    return {"before": _preview(before), "after": "(kept, flagged)"}


def length_histograms(before: list[Record], after: list[Record]) -> bytes:
    """Words per prompt and per response, before the steps and after them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, part in zip(axes, ("prompt", "response"), strict=True):
        for rows, label in ((before, f"read ({len(before)})"), (after, f"prepared ({len(after)})")):
            lengths = [len(getattr(r, part).split()) for r in rows]
            if lengths:
                ax.hist(lengths, bins=40, alpha=0.55, label=label)
        ax.set(title=f"words per {part}", xlabel="words", ylabel="rows")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
