"""``sweep data prepare``: the data recipe the fine-tuning guides teach, with a report.

read (every format the trainer reads; bad rows rejected by number) -> clean -> redact PII ->
deduplicate (exact, then MinHash near-duplicates) -> quality checks -> split (seeded, stratified
by label) -> decontaminate the training rows against the held-out set and the benchmarks.

Every file is read and every source loaded before anything is written; the output directory is
written under a temporary name and renamed at the end. Each step can be switched off, and each
counts what it changed. The public surface is :class:`PrepareOptions` and :func:`prepare_data`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.prepare._pii import KINDS
from sweeps.prepare._records import Record, StepResult

__all__ = ["PrepareOptions", "PrepareResult", "find_contamination", "prepare_data"]
Say = Callable[[str], None]


@dataclass(frozen=True)
class PrepareOptions:
    inputs: tuple[Path, ...]
    out_dir: Path
    fmt: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    label_field: str | None = None  # your label column: stratified split, label counts
    instruction: str | None = None  # text+label rows: the instruction the label answers
    heldout: Path | None = (
        None  # a held-out file of one's own: no split; train is checked against it
    )
    clean: bool = True
    speaker_tags: bool = False
    fillers: bool = False
    redact: bool = True
    pii_kinds: tuple[str, ...] = KINDS
    dedup: bool = True
    near_dedup: bool = True
    near_threshold: float = 0.8
    decontaminate: bool = True
    ngram: int = 13
    benchmarks: tuple[str, ...] = ()  # lm-eval task names whose mirror files are checked
    mirror: Path | None = None
    quality: bool = True
    min_response_chars: int | None = None  # None: decided from the data (_quality.py)
    max_seq_len: int | None = None
    model: str | None = None  # whose tokenizer measures max_seq_len
    template: str = "auto"
    drop_flagged: bool = True
    heldout_fraction: float = 0.1
    seed: int = 0


@dataclass
class PrepareResult:
    out_dir: Path
    steps: list[StepResult]
    rejected: list[tuple[Record, str]]
    train: list[Record]
    heldout: list[Record]
    manifest: dict[str, Any]


def prepare_data(options: PrepareOptions, *, progress: Say = print) -> PrepareResult:
    """Read, check and transform; then write train/heldout jsonl, the report and the manifest."""
    from sweeps.prepare._pipeline import check_output, load_inputs, run_steps, write_outputs

    check_output(options.out_dir)
    loaded = load_inputs(options, progress=progress)
    result = run_steps(options, loaded, progress=progress)
    write_outputs(options, loaded, result, progress=progress)
    return result


def find_contamination(
    train: list[Any], heldout: list[Any], *, tasks: tuple[str, ...] = (),
    mirror: Path | None = None, ngram: int = 13,
) -> list[tuple[Record, str]]:  # fmt: skip
    """Training examples (``trainers.data.Example``) sharing an n-gram with a held-out example or
    with a benchmark's evaluation file in ``mirror`` (tasks without a file there are skipped)."""
    from sweeps.prepare._contamination import NgramIndex, decontaminate, fields
    from sweeps.prepare._pipeline import benchmark_files

    index = NgramIndex(n=ngram)
    index.add_files(benchmark_files(tasks, mirror, strict=False))
    for record in as_records(heldout, source="held-out"):
        for text in fields(record):
            index.add(text, f"held-out row {record.row}")
    _, result = decontaminate(as_records(train, source="train"), index)
    return result.removed


def as_records(examples: list[Any], *, source: str) -> list[Record]:
    return [Record(source, e.row, messages=[dict(m) for m in e.messages] if not e.is_text
                   else None, text=e.text) for e in examples]  # fmt: skip
