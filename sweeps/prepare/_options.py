"""The options of ``sweep data prepare`` and what it returns (the package's public types)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from sweeps.config import DataConfig, DataFormat, PrepareConfig
from sweeps.prepare._pii import KINDS
from sweeps.prepare._records import Manifest, Record, StepResult

_DATA = DataConfig.model_fields  # the defaults a sweep YAML's data: section has too


class PrepareOptions(PrepareConfig):
    """Everything ``sweep data prepare`` does: the steps of a sweep YAML's ``prepare:`` section
    (PrepareConfig) and what that section takes from the rest of the YAML (data:, benchmarks:,
    the model). Its fields are the verb's arguments: sweeps/cli/arguments.py builds the flags
    from them."""

    inputs: tuple[Path, ...] = Field(
        (),
        description="jsonl, json, csv, parquet or txt files",
        json_schema_extra={"positional": True},
    )
    out_dir: Path = Field(
        description="new directory for the prepared data", json_schema_extra={"flag": "--out"}
    )
    format: DataFormat = Field(
        _DATA["format"].default,
        description="the rows' shape (auto: detected from the first row's keys)",
        json_schema_extra={"metavar": "SHAPE"},
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="map your columns to ours, e.g. "
        "instruction=question,output=answer (default: the shape's own names, matched "
        "case-insensitively)",
        json_schema_extra={"metavar": "NAME=COLUMN,..."},
    )
    label_field: str | None = Field(
        None,
        description="your label column: for text rows the label is the response; for any "
        "shape it stratifies the split (default: a column named label, sentiment, category, ...)",
        json_schema_extra={"metavar": "COLUMN"},
    )
    instruction: str | None = Field(None, description=_DATA["instruction"].description)
    heldout: Path | None = Field(
        None,
        description="your own held-out file: no split, the training rows are checked "
        "against it (default: split off the inputs, --heldout-fraction of them)",
    )
    heldout_fraction: float = Field(
        _DATA["val_set_size"].default,
        gt=0,
        lt=1,
        description="the share of rows split off as the held-out set",
    )
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
        _DATA["template"].default,
        description="the prompt template rows are measured in for "
        "--max-seq-len (auto: the model's chat template when it has one, else alpaca)",
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _columns_from_text(cls, value: object) -> object:
        """``--columns instruction=question,output=answer``: parsed, each name checked."""
        from trainers.data_shapes import parse_columns

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
