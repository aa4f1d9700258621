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
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.console import Say
from sweeps.prepare._options import PrepareOptions, PrepareResult
from sweeps.prepare._records import Record

if TYPE_CHECKING:
    from trainers.data import Example

__all__ = ["PrepareOptions", "PrepareResult", "find_contamination", "prepare_data"]


def prepare_data(options: PrepareOptions, *, progress: Say = print) -> PrepareResult:
    """Read, check and transform; then write train/heldout jsonl, the report and the manifest."""
    from sweeps.prepare._pipeline import check_output, load_inputs, run_steps, write_outputs

    check_output(options.out_dir)
    loaded = load_inputs(options, progress=progress)
    result = run_steps(options, loaded, progress=progress)
    write_outputs(options, loaded, result, progress=progress)
    return result


def find_contamination(
    train: Sequence[Example],
    heldout: Sequence[Example],
    *,
    tasks: tuple[str, ...] = (),
    mirror: Path | None = None,
    ngram: int | None = None,
) -> list[tuple[Record, str]]:
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
    return [
        Record(
            source,
            e.row,
            messages=[dict(m) for m in e.messages] if not e.is_text else None,
            text=e.text,
        )
        for e in examples
    ]
