"""``sweep data prepare``: the data recipe the fine-tuning guides teach, with a report.

read (every format the trainer reads; bad rows rejected by number) -> clean -> redact PII ->
deduplicate (exact, then MinHash near-duplicates) -> quality checks -> split (seeded, stratified
by label) -> decontaminate the training rows against the held-out set and the benchmarks.

Every file is read and every source loaded before anything is written; the output directory is
written under a temporary name and renamed at the end. Each step can be switched off, and each
counts what it changed. The public surface is :class:`PrepareOptions` and :func:`prepare_data`;
the steps' switches are the sweep YAML's ``prepare:`` section (``sweeps.config.PrepareConfig``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from sweeps.config import DataConfig, DataFormat, PrepareConfig
from sweeps.console import Say
from sweeps.prepare._pii import KINDS
from sweeps.prepare._records import Manifest, Record, StepResult

if TYPE_CHECKING:
    from trainers.data import Example

__all__ = ["PrepareOptions", "PrepareResult", "find_contamination", "prepare_data"]
_DATA = DataConfig.model_fields  # the defaults a sweep YAML's data: section has too


class PrepareOptions(PrepareConfig):
    """Everything ``sweep data prepare`` does: the steps of a sweep YAML's ``prepare:`` section
    (PrepareConfig) and what that section takes from the rest of the YAML (data:, benchmarks:,
    the model). Its fields are the verb's arguments: sweeps/options.py builds the flags from
    them."""

    inputs: tuple[Path, ...] = Field(
        (), description="jsonl, json, csv, parquet or txt files",
        json_schema_extra={"positional": True},
    )  # fmt: skip
    out_dir: Path = Field(
        description="new directory for the prepared data", json_schema_extra={"flag": "--out"}
    )
    format: DataFormat = Field(
        _DATA["format"].default, description="the rows' shape (auto: detected from the first "
        "row's keys)", json_schema_extra={"metavar": "SHAPE"},
    )  # fmt: skip
    columns: dict[str, str] = Field(
        default_factory=dict, description="map your columns to ours, e.g. "
        "instruction=question,output=answer (default: the shape's own names, matched "
        "case-insensitively)", json_schema_extra={"metavar": "NAME=COLUMN,..."},
    )  # fmt: skip
    label_field: str | None = Field(
        None, description="your label column: for text rows the label is the response; for any "
        "shape it stratifies the split (default: a column named label, sentiment, category, ...)",
        json_schema_extra={"metavar": "COLUMN"},
    )  # fmt: skip
    instruction: str | None = Field(None, description=_DATA["instruction"].description)
    heldout: Path | None = Field(
        None, description="your own held-out file: no split, the training rows are checked "
        "against it (default: split off the inputs, --heldout-fraction of them)",
    )  # fmt: skip
    heldout_fraction: float = Field(
        _DATA["val_set_size"].default, gt=0, lt=1,
        description="the share of rows split off as the held-out set",
    )  # fmt: skip
    seed: int = Field(_DATA["split_seed"].default, description="the split's random seed")
    pii_kinds: tuple[str, ...] = Field(KINDS, description="comma-separated kinds to redact")
    ngram: int = Field(13, ge=1, description="decontamination's n-gram length, in words")
    benchmarks: tuple[str, ...] = Field(
        (), description="comma-separated lm-eval tasks to decontaminate against (default: none)"
    )
    mirror: Path | None = Field(
        None, description="benchmark mirror, jsonl files (default: $LORA_SWEEP_BENCHMARK_MIRROR)"
    )
    max_seq_len: int | None = Field(
        None, ge=1, description="flag rows longer than this many tokens (default: no length check)"
    )
    model: str | None = Field(
        None, description="whose tokenizer measures --max-seq-len (needed with it; default: none)"
    )
    template: Literal["auto", "chat", "alpaca", "plain"] = Field(
        _DATA["template"].default, description="the prompt template rows are measured in for "
        "--max-seq-len (auto: the model's chat template when it has one, else alpaca)",
    )  # fmt: skip

    @field_validator("columns", mode="before")
    @classmethod
    def _columns_from_text(cls, value: object) -> object:
        """``--columns instruction=question,output=answer``: parsed, each name checked."""
        from trainers.data import parse_columns

        return parse_columns(value) if isinstance(value, str) else value

    @field_validator("pii_kinds")
    @classmethod
    def _known_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [kind for kind in value if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown kind {', '.join(unknown)}; known: {', '.join(KINDS)}")
        return value

    @property
    def measured_seq_len(self) -> int | None:
        """The token length rows are checked against: max_seq_len unless check_seq_len is off."""
        return self.max_seq_len if self.check_seq_len else None


@dataclass
class PrepareResult:
    out_dir: Path
    steps: list[StepResult]
    rejected: list[tuple[Record, str]]
    train: list[Record]
    heldout: list[Record]
    manifest: Manifest


def prepare_data(options: PrepareOptions, *, progress: Say = print) -> PrepareResult:
    """Read, check and transform; then write train/heldout jsonl, the report and the manifest."""
    from sweeps.prepare._pipeline import check_output, load_inputs, run_steps, write_outputs

    check_output(options.out_dir)
    loaded = load_inputs(options, progress=progress)
    result = run_steps(options, loaded, progress=progress)
    write_outputs(options, loaded, result, progress=progress)
    return result


def find_contamination(
    train: Sequence[Example], heldout: Sequence[Example], *, tasks: tuple[str, ...] = (),
    mirror: Path | None = None, ngram: int | None = None,
) -> list[tuple[Record, str]]:  # fmt: skip
    """Training examples sharing an n-gram with a held-out example or
    with a benchmark's evaluation file in ``mirror`` (tasks without a file there are skipped)."""
    from sweeps.prepare._contamination import NgramIndex, decontaminate, fields
    from sweeps.prepare._pipeline import benchmark_files

    index = NgramIndex(n=ngram or PrepareOptions.model_fields["ngram"].default)
    index.add_files(benchmark_files(tasks, mirror, strict=False))
    for record in as_records(heldout, source="held-out"):
        for text in fields(record):
            index.add(text, f"held-out row {record.row}")
    _, result = decontaminate(as_records(train, source="train"), index)
    return result.removed


def as_records(examples: Sequence[Example], *, source: str) -> list[Record]:
    return [Record(source, e.row, messages=[dict(m) for m in e.messages] if not e.is_text
                   else None, text=e.text) for e in examples]  # fmt: skip
