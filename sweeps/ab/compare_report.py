"""The A/B report's data: every row and section the HTML, the Markdown and report.json of
``sweep compare`` show (``ReportContext``), each delta A minus the reference B, and what the
verb returns (``Report``). Plain dataclasses; ``sweeps/ab/compare.py`` fills them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from evals.preference import PreferenceSummary
from sweeps.serving.sides import ItemRow, RegistryVersion


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
    return (
        f"detects a drop of {detectable * 100:.1f} points or more "
        f"({documents} documents, 80% power)"
    )


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
