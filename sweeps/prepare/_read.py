"""Read raw files in any shape the trainer reads, row by row.

A file that cannot be read at all (bad JSON, an encoding that is not UTF-8, a CSV without a
column its shape needs, rows of two shapes, a column mapping to a column it lacks) is an error
naming the file and row, raised before anything is written. A row of the file's shape with a
field missing or empty is rejected with its row number and the reason, never dropped silently:
the console counts it and the report lists it.
"""

from __future__ import annotations

import re
from pathlib import Path

from sweeps.prepare._records import Record
from trainers.data import Example, row_to_example, text_examples
from trainers.data_readers import ROW_KEY, DataError, Row, row_number
from trainers.data_shapes import DataSettings, Reading, read_rows


def read_file(
    path: Path, settings: DataSettings
) -> tuple[list[Record], list[tuple[Record, str]], Reading]:
    """``(records, rejected rows with their reasons, how the file was read)``; raises
    DataError for a bad file."""
    raw, reading = read_rows(path, settings)
    if isinstance(raw, str):
        examples = text_examples(raw, reading.shape.name, path)
        return [_record(e, path) for e in examples], [], reading
    _check_columns(path, raw, reading)
    records, rejected = [], []
    for row in raw:
        try:
            records.append(_record(row_to_example(row, reading, path), path))
        except DataError as exc:
            bare = Record(source=path.name, row=row_number(row), text=_preview(row))
            rejected.append((bare, re.sub(r"^row \d+: ", "", str(exc).removeprefix(f"{path}: "))))
    return records, rejected, reading


def _check_columns(path: Path, rows: list[Row], reading: Reading) -> None:
    """A table (CSV, parquet) without a column its shape needs is a bad file, not bad rows."""
    shape = reading.shape
    if path.suffix.lower() not in (".csv", ".parquet") or shape.name in ("chat", "sharegpt"):
        return
    missing = [c for c in shape.keys if c not in rows[0]]
    if missing:
        raise DataError(
            f"{path}: missing column {missing[0]!r} (format {shape.name}: {shape.summary})"
        )


def _record(example: Example, path: Path) -> Record:
    messages = [dict(m) for m in example.messages] if not example.is_text else None
    return Record(path.name, example.row, messages=messages, text=example.text, label=example.label)


def _preview(row: Row) -> str:
    """A short view of a rejected row for the report."""
    shown = {k: v for k, v in row.items() if k != ROW_KEY}
    return str(shown)[:300]
