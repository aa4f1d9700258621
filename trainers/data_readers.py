"""Data files read into rows, before any shape is known: jsonl, json, csv and parquet files as
numbered rows (``Row``, its number under ``ROW_KEY``), a .txt/.md file as its whole text (and
its paragraphs); ``DataError``, the one-line data problem every data module raises."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROW_KEY = "__row__"
# One row as its file holds it: column -> cell (JSON values, a table's cells), and ROW_KEY -> the
# row's number in the file. The cells are checked where they are read (_field, _chat_example).
Row = dict[str, object]


class DataError(ValueError):
    """A data problem, phrased as one line naming the file and row."""


def read_records(path: Path) -> list[Row] | str:
    """Rows of a jsonl/json/csv/parquet file, or the whole text of a .txt/.md file."""
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md"):
        return _read_text(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix in (".csv", ".parquet"):
        return _read_table(path)
    raise DataError(
        f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .csv, .parquet or .txt"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: row {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path}: row {number}: expected a JSON object, got {type(row).__name__}"
            )
        rows.append(row | {ROW_KEY: number})
    return rows


def _read_json(path: Path) -> list[Row]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of records (or {{'data': [...]}})")
    rows: list[Row] = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {number}: expected an object, got {type(row).__name__}")
        rows.append(row | {ROW_KEY: number})
    return rows


def _read_table(path: Path) -> list[Row]:
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot be parsed ({str(exc).splitlines()[0]})") from None
    records = frame.to_dict(orient="records")
    return [
        {k: _plain(v) for k, v in row.items()} | {ROW_KEY: number}
        for number, row in enumerate(records, start=1)
    ]


def _plain(value: object) -> object:
    """A parquet cell as JSON would hold it: arrays (a messages column) as lists."""
    if hasattr(value, "tolist") and hasattr(value, "ndim") and not isinstance(value, str):
        return [_plain(v) for v in value.tolist()] if value.ndim else value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def row_number(row: Row) -> int:
    """The row's number in its file, as the reader recorded it."""
    number = row[ROW_KEY]
    assert isinstance(number, int), f"{ROW_KEY} holds {number!r}, not a row number"
    return number


def row_keys(row: Row) -> list[str]:
    return [k for k in row if k != ROW_KEY]


def paragraph_blocks(text: str) -> list[str]:
    """A text file's paragraphs: its blocks between blank lines, stripped, empty ones left out."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text)]
    return [b for b in blocks if b]
