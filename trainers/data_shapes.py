"""The shapes users write rows in, and how a file is read: its shape detected from its first
row's keys (see ``SHAPES``): instruction/input/output (alpaca), instruction/response (with
Dolly's context and category), question/answer, prompt/completion, prompt/response,
input/output, text with a label column, ``### instruction ###`` + response (hash_pairs), plain
text, and chat messages (``messages`` or ShareGPT ``conversations``); the user's column names
mapped to ours (``data.columns``/``--columns``), and what the console says each column became
(``Reading``). Every row must have its file's shape; a row of another shape, or one the reader
cannot place, is an error naming the row, the keys it has, and the mapping that fixes it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from trainers.data_readers import (
    ROW_KEY,
    DataError,
    Row,
    paragraph_blocks,
    read_records,
    row_keys,
)

HASH_HEADER = re.compile(r"^###\s*(?P<instruction>.+?)\s*###\s*$", re.MULTILINE)
HASH_WRAPPED = re.compile(r"^\s*###\s*(?P<inner>.+?)\s*###\s*$", re.DOTALL)
# Columns a text file's label may be in, as the guides' classification data names them.
LABEL_COLUMNS = (
    "label",
    "labels",
    "sentiment",
    "category",
    "class",
    "target",
    "intent",
    "topic",
    "emotion",
)


@dataclass(frozen=True)
class Shape:
    """One way users write rows: the keys that identify it, and what each key becomes."""

    name: str
    keys: tuple[str, ...]  # a row has this shape when it has these keys
    instruction: str = ""  # the key holding the user's turn
    response: str = ""  # the key holding the assistant's turn (the target)
    context: str = ""  # a key appended to the instruction (alpaca's input, Dolly's context)
    label: str = ""  # a key kept as the row's label (stratified split, counts): not trained on

    @property
    def summary(self) -> str:
        if self.name == "text_label":
            return f"text+a label column ({', '.join(LABEL_COLUMNS[:4])}, ...)"
        optional = [k for k in (self.context, self.label) if k and k not in self.keys]
        return "+".join(self.keys) + "".join(f" [{k}]" for k in optional)


# In order of precedence: the first shape whose keys a row has is the row's shape.
# A table, left as laid out: one shape a row, its columns in the same places.
SHAPES = (
    Shape("chat", ("messages",)),
    Shape("sharegpt", ("conversations",)),
    Shape("alpaca", ("instruction", "output"), "instruction", "output", "input"),
    Shape("instruction_response", ("instruction", "response"), "instruction", "response", "input",
          "category"),
    # a file of instruction/response rows where any row has a context (Databricks Dolly): never
    # the first match of a row (the shape above is), chosen for the file by _file_shape
    Shape("dolly", ("instruction", "response"), "instruction", "response", "context", "category"),
    Shape("question_answer", ("question", "answer"), "question", "answer", "context"),
    Shape("prompt_completion", ("prompt", "completion"), "prompt", "completion"),
    Shape("prompt_response", ("prompt", "response"), "prompt", "response"),
    Shape("input_output", ("input", "output"), "input", "output"),
    Shape("text_label", ("text", "label"), "", "label", "text"),
    Shape("text", ("text",)),
)  # fmt: skip
SHAPE_NAMES = (*(s.name for s in SHAPES), "hash_pairs")
BY_NAME = {s.name: s for s in SHAPES} | {"hash_pairs": Shape("hash_pairs", ("text",))}
# Names data.columns / --columns may map a file's columns to.
KNOWN_COLUMNS = tuple(sorted({k for s in SHAPES for k in (*s.keys, s.context, s.label) if k}))
FORMAT_ALIASES = {"sharegpt": "chat"}


def known_shapes() -> str:
    """``instruction+output [input], question+answer [context], ...``: for error messages."""
    return ", ".join(s.summary for s in SHAPES if s.name != "sharegpt")


@dataclass(frozen=True)
class DataSettings:
    """How a data file is read (the ``data:`` section's reading keys; defaults live in its schema)."""

    fmt: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)  # {our name: your column}
    system_prompt: str | None = None
    instruction: str | None = None  # text+label rows: the instruction the label answers
    label_field: str | None = None  # your label column (stratified split, counts)


@dataclass(frozen=True)
class Reading:
    """How one file is read: its shape and what each of its columns becomes."""

    shape: Shape
    label_column: str | None = None  # the file's own name for the label column
    instruction: str | None = None  # text+label: the instruction every row gets
    strip_hashes: bool = False  # instructions written as '### ... ###'
    choices: tuple[
        str, ...
    ] = ()  # multiple-choice option columns (a, b, c, d), listed in the prompt
    notes: tuple[str, ...] = ()  # what the console should say about this file


def fits(shape: Shape, row: Row) -> bool:
    return all(key in row for key in shape.keys)


def shape_of(row: Row) -> Shape | None:
    """The first shape (in precedence order) whose keys the row has."""
    return next((shape for shape in SHAPES if fits(shape, row)), None)


def detect_format(rows: list[Row] | str) -> str:
    """The shape a file's first row (or its text) is in: a name in SHAPE_NAMES, or unknown."""
    if isinstance(rows, str):
        return "hash_pairs" if HASH_HEADER.search(rows) else "text"
    if not rows:
        return "unknown"
    row = _with_label_key(_lowercase_keys(rows[0]), None)
    shape = shape_of(row)
    if shape is None:
        return "unknown"
    if shape.name == "text" and _is_hash_pair(row["text"]):
        return "hash_pairs"
    return FORMAT_ALIASES.get(shape.name, shape.name)


def _is_hash_pair(value: object) -> bool:
    return isinstance(value, str) and HASH_HEADER.match(value.strip()) is not None


def _lowercase_keys(row: Row) -> Row:
    """``Instruction``/``Response`` (spreadsheet headers) read as ``instruction``/``response``."""
    lowered = {
        k.strip().lower() if isinstance(k, str) and k != ROW_KEY else k: v for k, v in row.items()
    }
    return lowered if len(lowered) == len(row) else row


def _label_column(row: Row, label_field: str | None) -> str | None:
    """A text row's label column: the one named, else the first known label name it has."""
    if label_field is not None:
        return label_field if label_field in row else None
    return next((c for c in LABEL_COLUMNS if c in row), None)


def _with_label_key(row: Row, label_field: str | None) -> Row:
    """A ``text`` row with a label column gets it as ``label`` too (the text_label shape)."""
    if "text" not in row or "label" in row or _is_hash_pair(row.get("text")):
        return row
    column = _label_column(row, label_field)
    return row if column is None else row | {"label": row[column]}


def parse_columns(pairs: str, *, flag: str = "--columns") -> dict[str, str]:
    """``instruction=question,output=answer`` as a mapping; a malformed pair is one clear line."""
    mapping = {}
    for pair in (p.strip() for p in pairs.split(",")):
        if not pair:
            continue
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise DataError(
                f"{flag}: {pair!r} is not NAME=COLUMN; e.g. {flag} instruction=question,"
                "output=answer (names: " + ", ".join(KNOWN_COLUMNS) + ")"
            )
        mapping[ours.strip()] = theirs.strip()
    check_column_names(mapping, flag=flag)
    return mapping


def check_column_names(columns: dict[str, str], *, flag: str = "data.columns") -> None:
    for ours in columns:
        if ours not in KNOWN_COLUMNS:
            raise DataError(f"{flag}: unknown column {ours!r}; known: {', '.join(KNOWN_COLUMNS)}")


def rename_columns(path: Path, rows: list[Row], columns: dict[str, str]) -> list[Row]:
    """Each row with the user's columns renamed to ours; a mapped column the file lacks is an
    error naming the columns it has."""
    present = {k for row in rows for k in row_keys(row)}
    folded = {k.lower(): k for k in present if isinstance(k, str)}
    columns = {
        ours: theirs if theirs in present else folded.get(theirs.lower(), theirs)
        for ours, theirs in columns.items()
    }
    for ours, theirs in columns.items():
        if theirs not in present:
            raise DataError(
                f"{path}: columns mapping {ours}={theirs}: the file has no column {theirs!r} "
                f"(its columns: {', '.join(sorted(present))})"
            )
    renamed = []
    for row in rows:
        out = {k: v for k, v in row.items() if k not in columns.values()}
        out |= {ours: row[theirs] for ours, theirs in columns.items() if theirs in row}
        renamed.append(out)
    return renamed


def read_rows(path: Path, settings: DataSettings | None = None) -> tuple[list[Row] | str, Reading]:
    """A file's rows (columns renamed) or its whole text, and how they are read; a file in no
    known shape, or of two shapes, is an error naming the row, its keys, and the fix."""
    settings = settings or DataSettings()
    records = read_records(path)
    if isinstance(records, str):
        fmt = detect_format(records) if settings.fmt == "auto" else settings.fmt
        if fmt not in ("text", "hash_pairs"):
            raise DataError(
                f"{path}: a text file holds paragraphs or '### instruction ###' "
                f"blocks, not format {fmt}"
            )
        return records, Reading(BY_NAME[fmt], notes=_text_notes(path, records, fmt))
    if not records:
        raise DataError(f"{path}: no examples found (the file has no rows)")
    if settings.columns:  # your own column names, as the file spells them
        check_column_names(settings.columns)
        records = rename_columns(path, records, settings.columns)
    records = [_lowercase_keys(row) for row in records]
    reading = _reading(path, records, settings)
    if reading.label_column and reading.shape.name == "text_label":
        records = [r | {"label": r.get(reading.label_column)} for r in records]
    _check_one_shape(path, records, reading.shape)
    return records, reading


def _text_notes(path: Path, text: str, fmt: str) -> tuple[str, ...]:
    """A text file's count of blocks or paragraphs, and any text before the first block (which
    belongs to no example: said, never dropped silently)."""
    if fmt != "hash_pairs":
        return (f"{path}: {len(paragraph_blocks(text))} paragraphs, shape text",)
    headers = list(HASH_HEADER.finditer(text))
    notes = [f"{path}: {len(headers)} '### instruction ###' blocks, shape hash_pairs"]
    preamble = text[: headers[0].start()] if headers else ""
    if preamble.strip():
        lines = preamble.count("\n")
        notes.append(
            f"  lines 1-{lines} come before the first '### ... ###' block and are not "
            "used (make them a block, or remove them)"
        )
    return tuple(notes)


def _reading(path: Path, records: list[Row], settings: DataSettings) -> Reading:
    first = records[0]
    label_field = settings.label_field
    if label_field is not None and label_field in settings.columns.values():  # mapped: our name
        label_field = next(
            ours for ours, theirs in settings.columns.items() if theirs == label_field
        )
    elif label_field is None and "label" in settings.columns:
        label_field = "label"
    elif label_field is not None and label_field not in first and label_field.lower() in first:
        label_field = label_field.lower()  # the header as written: Sentiment
    if label_field is not None and label_field not in first:
        raise DataError(
            f"{path}: label field {label_field!r} is not a column of the file "
            f"(its columns: {', '.join(row_keys(first))})"
        )
    shape = _file_shape(path, records, settings.fmt, label_field)
    label = label_field or (shape.label if shape.label in first else None)
    if shape.name == "text_label":  # the column named wins over one called label
        label = label_field or ("label" if "label" in first else _label_column(first, None))
    notes = [f"{path}: {len(records)} rows, shape {shape.name} ({_mapping(shape, first, label)})"]
    instruction = None
    if shape.name == "text_label":
        instruction = settings.instruction or f"What is the {label} of this text?"
        source = "data.instruction" if settings.instruction else "default; set data.instruction"
        notes.append(f"  every row's instruction: {instruction!r} ({source} or --instruction)")
    used = {*shape.keys, shape.context, label or ""}
    choices = _choice_columns(first) if shape.instruction else ()
    if choices:
        notes.append(
            f"  options {', '.join(c.upper() for c in choices)} listed under each "
            "instruction as 'A. ...' lines (multiple choice)"
        )
    used |= set(choices)
    unused = [k for k in row_keys(first) if k not in used]
    if unused and shape.name not in ("chat", "sharegpt"):
        notes.append(
            f"  columns not used: {', '.join(unused)} (map one with data.columns / "
            "--columns to use it)"
        )
    wrapped = _count_hash_wrapped(records, shape.instruction) if shape.instruction else 0
    if wrapped:
        notes.append(
            f"  '### ... ###' delimiters taken off {wrapped} instructions (the chat "
            "template marks the instruction instead)"
        )
    return Reading(shape, label, instruction, wrapped > 0, choices, tuple(notes))


def _choice_columns(row: Row) -> tuple[str, ...]:
    """Multiple-choice option columns: ``a``, ``b``, ... (two or more, in order), as the guides'
    multiple-choice CSVs have them beside question and answer."""
    letters = []
    for letter in "abcdefghij":
        if letter not in row:
            break
        letters.append(letter)
    return tuple(letters) if len(letters) >= 2 else ()


def _mapping(shape: Shape, first: Row, label: str | None) -> str:
    """``question -> instruction, context -> input, answer -> response``: what each key becomes."""
    if shape.name == "text_label":
        return f"text -> input, {label} -> response"
    roles = (
        (shape.instruction, "instruction"),
        (shape.context, "input"),
        (shape.response, "response"),
        (label or "", "label"),
    )
    parts = [f"{key} -> {role}" for key, role in roles if key and key in first]
    return ", ".join(parts) or ", ".join(shape.keys)


def _count_hash_wrapped(records: list[Row], key: str) -> int:
    return sum(
        isinstance(cell := r.get(key), str) and HASH_WRAPPED.match(cell) is not None
        for r in records
    )


def _file_shape(path: Path, records: list[Row], fmt: str, label_field: str | None) -> Shape:
    first = records[0]
    if fmt == "chat" and "messages" not in first and "conversations" in first:
        return BY_NAME["sharegpt"]  # format: chat reads both chat shapes (init writes it for both)
    if fmt != "auto":
        return BY_NAME[fmt]
    detected = detect_format([_with_label_key(first, label_field)])
    if detected == "unknown":
        raise DataError(f"{path}: row {first[ROW_KEY]}: {_no_shape(first)}")
    if detected == "instruction_response" and any("context" in row for row in records):
        return BY_NAME["dolly"]  # its context is optional row by row, as Dolly's is
    return (
        BY_NAME["sharegpt"]
        if detected == "chat" and "messages" not in first
        else (BY_NAME[detected])
    )


def _no_shape(row: Row) -> str:
    """Why a row fits no shape: the keys it has, the nearest shape's missing field, the shapes
    known, and a mapping of the row's own keys that would fix it."""
    keys = row_keys(row)
    near = [s for s in SHAPES if s.instruction and set(s.keys) & set(keys)]
    near.sort(key=lambda s: len(set(s.keys) - set(keys)))  # fewest missing, then precedence
    missing = [k for k in near[0].keys if k not in keys] if near else ["instruction", "output"]
    used = {k for k in (*near[0].keys, near[0].context, near[0].label) if k} if near else set()
    spare = [k for k in keys if k not in used and isinstance(row[k], str)]
    example = ",".join(
        f"{want}={spare[i] if i < len(spare) else 'COLUMN'}" for i, want in enumerate(missing)
    )
    nearest = f": missing field {missing[0]!r} ({near[0].summary})" if near else ""
    return (
        f"no known shape in keys ({', '.join(sorted(keys)) or 'none'}){nearest}; known "
        f"shapes: {known_shapes()}; map yours, e.g. --columns {example} (data.columns in a "
        "sweep YAML)"
    )


def _check_one_shape(path: Path, records: list[Row], shape: Shape) -> None:
    """Every row of a file has the first row's shape: the first row of another names it."""
    if shape.name in ("text", "hash_pairs", "text_label"):
        return
    for row in records[1:]:
        if fits(shape, row):
            continue
        other = shape_of(row)
        if other is not None and other.name not in ("text",):
            raise DataError(
                f"{path}: row {row[ROW_KEY]}: shape {other.name} ({', '.join(row_keys(row))}), "
                f"but row {records[0][ROW_KEY]} is {shape.name} ({shape.summary}); one file "
                "holds one shape: split it, or rename the fields so every row has the same ones"
            )
