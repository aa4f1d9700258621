"""``sweep errors REF``: the held-out rows an adapter still gets wrong, grouped, and written as
data the recipe reads (the "iterate" step of the fine-tuning guides).

:func:`find_errors` resolves the reference to a sweep's adapter (``sweeps/serving/sides.py``), scores it on
every held-out row (``sweeps/serving/scoring.py``, cached after ``compare`` or ``promote``), and hands the
rows to :func:`analyse_errors`, a pure function that groups the wrong ones (task-metric score
below 1): by score band, by input length, by label for classification tasks and by JSON field
for field-F1 tasks. What it writes, in ``reports/errors-REF`` unless told:

- ``errors.jsonl``: each wrong row as a chat ``messages`` row, the reference as the answer: the
  shape ``sweep data prepare`` and training read, nothing else in it;
- ``errors_detail.jsonl``: each wrong row's score, prediction and groups;
- ``errors.json``: the analysis; ``errors.md``: a summary to read, with the next command.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from evals.metrics import field_pairs, normalize_text, parse_json_object
from sweeps.config import ConfigError
from sweeps.console import Say
from sweeps.report_templates import clip, template_env
from sweeps.serving.sides import BASE, Turn, conversation, resolve_side, slug
from trainers.spec import TrialSpec

if TYPE_CHECKING:
    from sweeps.serving.scoring import ScoredRow

BANDS = ("0", "(0, 0.5)", "[0.5, 1)")  # the wrong rows' task-metric scores
THIRDS = ("short", "medium", "long")  # input length, in thirds of all rows
LABEL_MAX_CHARS = 40  # a reference longer than this is an answer, not a label
MAX_LABELS = 50
WORST_SHOWN = 5
FILES = ("errors.jsonl", "errors_detail.jsonl", "errors.json", "errors.md")
NEXT_OUT = "data/round2"


# --------------------------------------------------------------------------- the analysis
@dataclass(frozen=True)
class Group:
    """Rows sharing an input-length third or a label: how many, how many wrong."""

    name: str
    rows: int
    wrong: int
    detail: str = ""  # the third's character range

    @property
    def rate(self) -> float:
        return self.wrong / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class FieldErrors:
    """One JSON field over the wrong rows: expected but absent, present with another value, or
    present though not expected."""

    name: str
    missing: int = 0
    wrong: int = 0
    extra: int = 0

    @property
    def total(self) -> int:
        return self.missing + self.wrong + self.extra


@dataclass(frozen=True)
class RowError:
    """One wrong held-out row, with the groups it falls in."""

    id: str
    turns: list[Turn]
    reference: str
    prediction: str
    score: float
    band: str
    length: int  # the user turn, in characters
    length_group: str
    label: str | None = None
    missing: list[str] = field(default_factory=list)
    wrong_fields: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unparseable: bool = False  # a JSON task's output with no JSON object in it


@dataclass(frozen=True)
class ErrorAnalysis:
    """The held-out rows' totals and the wrong ones grouped (``errors``: worst first)."""

    metric: str
    rows: int
    wrong: int
    mean_score: float
    bands: dict[str, int]
    lengths: list[Group]
    labels: list[Group]  # empty unless the references are labels
    fields: list[FieldErrors]  # empty unless the references are JSON objects
    unparseable: int
    errors: list[RowError]

    @property
    def error_rate(self) -> float:
        return self.wrong / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["error_rate"] = self.error_rate
        for name in ("lengths", "labels"):
            for group, raw in zip(getattr(self, name), data[name], strict=True):
                raw["rate"] = group.rate
        return data


def analyse_errors(
    items: Sequence[ScoredRow], *, metric: str, label_field_present: bool = False
) -> ErrorAnalysis:
    """Group the rows scoring below 1 on the task metric. ``items``: scored held-out rows (``id``,
    ``prompt``, ``reference``, ``prediction``, ``score``). ``label_field_present``: the data names
    a label column, so short references are labels even when many are distinct."""
    turns = [conversation(str(item["prompt"])) for item in items]
    lengths = [len(input_text(t)) for t in turns]
    thirds = length_thirds(lengths)
    references = [str(item["reference"]) for item in items]
    labelled = looks_like_labels(references, metric=metric, hinted=label_field_present)
    json_task = metric == "field_f1" or all(is_json_object(r) for r in references)
    wrong = [i for i, item in enumerate(items) if float(item["score"]) < 1]
    errors = [
        row_error(
            items[i],
            turns=turns[i],
            length=lengths[i],
            third=thirds[i],
            label=normalize_text(references[i]) if labelled else None,
            json_task=json_task,
        )
        for i in wrong
    ]
    errors.sort(key=lambda e: (e.score, e.id))
    scores = [float(item["score"]) for item in items]
    return ErrorAnalysis(
        metric=metric,
        rows=len(items),
        wrong=len(wrong),
        mean_score=sum(scores) / len(scores) if scores else float("nan"),
        bands={band: sum(e.band == band for e in errors) for band in BANDS},
        lengths=length_groups(lengths, thirds, wrong=set(wrong)),
        labels=label_groups(references, wrong=set(wrong)) if labelled else [],
        fields=field_counts(errors) if json_task else [],
        unparseable=sum(e.unparseable for e in errors),
        errors=errors,
    )


def band(score: float) -> str:
    """The wrong row's score band: nothing right, under half, half or more."""
    return BANDS[0] if score <= 0 else BANDS[1] if score < 0.5 else BANDS[2]


def input_text(turns: Sequence[Turn]) -> str:
    """The row's input: its last user turn (the whole prompt when no template was read)."""
    return next((t.content for t in reversed(turns) if t.role in ("user", "prompt")), "")


def length_thirds(lengths: Sequence[int]) -> list[int]:
    """Each row's third (0 short, 1 medium, 2 long) by its rank in length; rows of one length
    share the third of the first of them, so the thirds' ranges never overlap."""
    ranked = sorted(lengths)
    first: dict[int, int] = {}
    for rank, length in enumerate(ranked):
        first.setdefault(length, rank)
    return [min(2, first[length] * 3 // len(ranked)) for length in lengths]


def length_groups(lengths: Sequence[int], thirds: Sequence[int], *, wrong: set[int]) -> list[Group]:
    """The non-empty thirds with their character ranges, short to long."""
    groups = []
    for third, name in enumerate(THIRDS):
        members = [i for i, t in enumerate(thirds) if t == third]
        if members:
            low, high = min(lengths[i] for i in members), max(lengths[i] for i in members)
            groups.append(
                Group(name, len(members), len(wrong.intersection(members)), f"{low}-{high} chars")
            )
    return groups


def looks_like_labels(references: Sequence[str], *, metric: str, hinted: bool) -> bool:
    """A classification task: short one-line references, few distinct ones (or any repeated
    under exact match, or a label column named in the data)."""
    distinct = {normalize_text(r) for r in references}
    if not 2 <= len(distinct) <= MAX_LABELS:
        return False
    if any(len(r) > LABEL_MAX_CHARS or "\n" in r or r.startswith("{") for r in distinct):
        return False
    few = len(distinct) <= max(2, len(references) // 4)
    repeated = metric == "exact_match" and len(distinct) < len(references)
    return hinted or few or repeated


def label_groups(references: Sequence[str], *, wrong: set[int]) -> list[Group]:
    """Each label's rows and wrong rows, the most often wrong first."""
    labels = [normalize_text(r) for r in references]
    rows = Counter(labels)
    wrongs = Counter(labels[i] for i in wrong)
    groups = [Group(label, count, wrongs[label]) for label, count in rows.items()]
    return sorted(groups, key=lambda g: (-g.rate, -g.wrong, g.name))


def is_json_object(text: str) -> bool:
    return text.lstrip().startswith("{") and parse_json_object(text) is not None


def row_error(
    item: ScoredRow,
    *,
    turns: list[Turn],
    length: int,
    third: int,
    label: str | None,
    json_task: bool,
) -> RowError:
    reference, prediction = str(item["reference"]), str(item["prediction"])
    score = float(item["score"])
    row = RowError(
        id=str(item["id"]),
        turns=turns,
        reference=reference,
        prediction=prediction,
        score=score,
        band=band(score),
        length=length,
        length_group=THIRDS[third],
        label=label,
    )
    if not json_task:
        return row
    expected, predicted = parse_json_object(reference), parse_json_object(prediction)
    if expected is None:
        return row
    if predicted is None:
        return replace(row, unparseable=True)
    want, got = dict(field_pairs(expected)), dict(field_pairs(predicted))
    return replace(
        row,
        missing=sorted(want.keys() - got.keys()),
        wrong_fields=sorted(k for k in want.keys() & got.keys() if want[k] != got[k]),
        extra=sorted(got.keys() - want.keys()),
    )


def field_counts(errors: Sequence[RowError]) -> list[FieldErrors]:
    """Per JSON field, how many wrong rows miss it, get it wrong or add it; the most often
    wrong field first (unparseable outputs are counted apart, not as every field missed)."""
    names = {n for e in errors for n in (*e.missing, *e.wrong_fields, *e.extra)}
    counts = [
        FieldErrors(
            name,
            missing=sum(name in e.missing for e in errors),
            wrong=sum(name in e.wrong_fields for e in errors),
            extra=sum(name in e.extra for e in errors),
        )
        for name in names
    ]
    return sorted(counts, key=lambda f: (-f.total, f.name))


# --------------------------------------------------------------------------- finding and writing
@dataclass(frozen=True)
class ErrorReport:
    """What ``sweep errors`` found and wrote."""

    ref: str
    label: str  # the side as the report names it
    sweep: str
    analysis: ErrorAnalysis
    out_dir: Path
    paths: dict[str, Path]  # errors.jsonl, errors_detail.jsonl, errors.json, errors.md

    @property
    def data(self) -> Path:
        """errors.jsonl: the wrong rows as chat rows, what ``sweep data prepare`` reads."""
        return self.paths["errors.jsonl"]

    def lines(self) -> list[str]:
        """The console's account: counts, the groups with most errors, the files, what next."""
        a = self.analysis
        lines = [
            f"{self.label}: {a.wrong} of {a.rows} held-out rows of sweep {self.sweep} wrong "
            f"({a.error_rate:.0%}); mean {a.metric} {a.mean_score:.3f}"
        ]
        if not a.wrong:
            return [
                *lines,
                "Nothing to iterate on: every held-out row is right. A harder "
                "or larger held-out set would show what it still misses.",
            ]
        lines.append("By score: " + ", ".join(f"{b}: {n}" for b, n in a.bands.items()))
        lines.append(length_line(a))
        if a.labels:
            lines.append(
                "By label: " + ", ".join(f"{g.name} {g.wrong}/{g.rows}" for g in a.labels[:5])
            )
        if a.fields or a.unparseable:
            fields = ", ".join(
                f"{f.name} (missing {f.missing}, wrong {f.wrong}, extra {f.extra})"
                for f in a.fields[:3]
            )
            lines.append(
                f"JSON fields: {fields or 'none'}; outputs with no JSON object: {a.unparseable}"
            )
        lines.append(f"Wrote {self.out_dir}: {', '.join(FILES)} ({a.wrong} rows in errors.jsonl)")
        return [
            *lines,
            f"Next: {next_command(self.data)}  (then add more examples like "
            "these to the training data; errors.md says how)",
        ]


def length_line(a: ErrorAnalysis) -> str:
    """The input-length third most often wrong, when one is wrong more often than the rest;
    thirds tied at the top are called a tie."""
    top = max(g.rate for g in a.lengths)
    if top <= a.error_rate:
        return (
            f"By input length: as often wrong on short, medium and long inputs ({a.error_rate:.0%})"
        )
    worst = [g for g in a.lengths if g.rate == top]
    if len(worst) > 1:
        each = ", ".join(f"{g.name} ({g.detail}) {g.wrong} of {g.rows}" for g in worst)
        return f"Most often wrong, tied at {top:.0%}: {each} ({a.error_rate:.0%} overall)"
    return (
        f"Most often wrong: {worst[0].name} inputs ({worst[0].detail}), {worst[0].wrong} of "
        f"{worst[0].rows} ({top:.0%}; {a.error_rate:.0%} overall)"
    )


def find_errors(
    ref: str,
    *,
    state_dir: Path,
    mlflow_uri: str,
    out_dir: Path | None = None,
    progress: Say = print,
) -> ErrorReport:
    """Score ``ref``'s adapter on every held-out row of its sweep, group the rows it gets wrong,
    and write them (default ``reports/errors-REF``)."""
    from sweeps.serving.scoring import load_spec, score_every_row

    if ref == BASE:
        raise ConfigError(
            "base: errors are found for an adapter on its sweep's held-out set; name SWEEP, "
            "SWEEP/TRIAL, a trial's run id or a registry alias (champion) of a sweep's adapter"
        )
    side = resolve_side(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
    if side.state is None:
        raise ConfigError(
            f"{ref}: {side.label} comes from no sweep under {state_dir}, so there is no held-out "
            "set to find its errors on; name SWEEP, SWEEP/TRIAL or a registry alias (champion) "
            "of an adapter a sweep trained"
        )
    spec = load_spec(side.state)
    scores = score_every_row(spec, {side.label: side.adapter}, progress=progress)[side.label]
    analysis = analyse_errors(
        scores.items, metric=spec.task_metric, label_field_present=has_label_column(spec)
    )
    out_dir = out_dir or Path("reports") / f"errors-{slug(ref)}"
    paths = write_errors(analysis, out_dir=out_dir, title=f"{side.label}, sweep {side.state.name}")
    return ErrorReport(ref, side.label, side.state.name, analysis, out_dir, paths)


def has_label_column(spec: TrialSpec) -> bool:
    """The data names its label (a label column, or text+label rows whose response it is)."""
    return spec.data.label_field is not None or spec.data.format == "text_label"


def chat_row(error: RowError) -> dict[str, list[dict[str, str]]]:
    """The row as training data: its prompt's turns, the reference as the assistant's answer."""
    turns = [
        {"role": "user" if t.role == "prompt" else t.role, "content": t.content}
        for t in error.turns
        if t.content or t.role != "system"
    ]
    return {"messages": [*turns, {"role": "assistant", "content": error.reference}]}


def detail_row(error: RowError) -> dict[str, object]:
    data = asdict(error)
    data["prompt"] = data.pop("turns")
    return data


def write_errors(analysis: ErrorAnalysis, *, out_dir: Path, title: str) -> dict[str, Path]:
    """errors.jsonl, errors_detail.jsonl, errors.json and errors.md in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in FILES}
    paths["errors.jsonl"].write_text(
        "".join(json.dumps(chat_row(e), ensure_ascii=False) + "\n" for e in analysis.errors)
    )
    paths["errors_detail.jsonl"].write_text(
        "".join(json.dumps(detail_row(e), ensure_ascii=False) + "\n" for e in analysis.errors)
    )
    paths["errors.json"].write_text(json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False))
    paths["errors.md"].write_text(
        render_markdown(analysis, title=title, data=paths["errors.jsonl"])
    )
    return paths


def next_command(data: Path) -> str:
    return f"sweep data prepare {data} --out {NEXT_OUT}"


def render_markdown(analysis: ErrorAnalysis, *, title: str, data: Path) -> str:
    """errors.md, from ``templates/errors.md.j2``."""
    env = template_env()
    env.filters["cell"] = lambda v: clip(v).replace("|", "\\|")
    env.filters["pct"] = lambda v: f"{v:.0%}"
    return env.get_template("errors.md.j2").render(
        title=title,
        a=analysis,
        worst=analysis.errors[:WORST_SHOWN],
        next_command=next_command(data),
        data_name=data.name,
        next_out=NEXT_OUT,
    )
