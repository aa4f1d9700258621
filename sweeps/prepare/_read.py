"""Read raw files in any format the trainer reads, row by row.

A file that cannot be read at all (bad JSON, an encoding that is not UTF-8, a CSV without a
column its format needs) is an error naming the file and row, raised before anything is written.
A row that matches no format is rejected with its row number and the reason, never dropped
silently: the report lists it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sweeps.prepare._records import Record
from trainers.data import (
    FORMAT_FIELDS,
    DataError,
    Example,
    read_rows,
    row_to_example,
    text_examples,
)

REQUIRED_COLUMNS = {
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "hash_pairs": ("text",),
}


def read_file(
    path: Path, *, fmt: str = "auto", columns: dict[str, str] | None = None,
    label_field: str | None = None,
) -> tuple[list[Record], list[tuple[Record, str]], str]:  # fmt: skip
    """``(records, rejected rows with their reasons, format)``; raises DataError for a bad file."""
    raw, chosen = read_rows(path, fmt=fmt, columns=columns)
    if isinstance(raw, str):
        return [_record(e, path, None) for e in text_examples(raw, chosen, path)], [], chosen
    _check_columns(path, raw, chosen)
    records, rejected = [], []
    for row in raw:
        label = _label(row, label_field)
        try:
            records.append(_record(row_to_example(row, chosen, path), path, label))
        except DataError as exc:
            bare = Record(source=path.name, row=int(row["__row__"]), text=_preview(row))
            rejected.append((bare, re.sub(r"^row \d+: ", "", str(exc).removeprefix(f"{path}: "))))
    return records, rejected, chosen


def _check_columns(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    """A table (CSV, parquet) without a column its format needs is a bad file, not bad rows."""
    if path.suffix.lower() not in (".csv", ".parquet") or fmt not in REQUIRED_COLUMNS:
        return
    missing = [c for c in REQUIRED_COLUMNS[fmt] if c not in rows[0]]
    if missing:
        raise DataError(
            f"{path}: missing column {missing[0]!r} (format {fmt}: {FORMAT_FIELDS[fmt]})"
        )


def _label(row: dict[str, Any], field: str | None) -> str | None:
    if field is None or row.get(field) is None:
        return None
    return str(row[field])


def _record(example: Example, path: Path, label: str | None) -> Record:
    messages = [dict(m) for m in example.messages] if not example.is_text else None
    return Record(path.name, example.row, messages=messages, text=example.text, label=label)


def _preview(row: dict[str, Any]) -> str:
    """A short view of a rejected row for the report."""
    shown = {k: v for k, v in row.items() if k != "__row__"}
    return str(shown)[:300]
