"""Users' data in the shapes fine-tuning guides use, normalised to chat turns.

Reading and checking rows needs no torch (``sweep validate`` and ``sweep launch`` check every row
before Ray starts). Each file's shape is detected from its first row's keys (see ``SHAPES``):
instruction/input/output (alpaca), instruction/response (with Dolly's context and category),
question/answer, prompt/completion, prompt/response, input/output, text with a label column,
``### instruction ###`` + response (hash_pairs), plain text, and chat messages (``messages`` or
ShareGPT ``conversations``). Every row must have its file's shape; a row of another shape, or one
the reader cannot place, is an error naming the row, the keys it has, and the mapping that fixes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

HASH_HEADER = re.compile(r"^###\s*(?P<instruction>.+?)\s*###\s*$", re.MULTILINE)
HASH_WRAPPED = re.compile(r"^\s*###\s*(?P<inner>.+?)\s*###\s*$", re.DOTALL)
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
# Columns a text file's label may be in, as the guides' classification data names them.
LABEL_COLUMNS = ("label", "labels", "sentiment", "category", "class", "target", "intent", "topic",
                 "emotion")  # fmt: skip
ROW_KEY = "__row__"
# One row as its file holds it: column -> cell (JSON values, a table's cells), and ROW_KEY -> the
# row's number in the file. The cells are checked where they are read (_field, _chat_example).
Row = dict[str, object]


class DataError(ValueError):
    """A data problem, phrased as one line naming the file and row."""


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
class Example:
    """One training example: chat turns (targets are the assistant turns), or plain text."""

    messages: tuple[dict[str, str], ...] = ()
    text: str | None = None
    row: int = 0
    label: str | None = None

    @property
    def is_text(self) -> bool:
        return self.text is not None

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        """Turns before the last assistant turn: what a model sees at generation time."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return list(self.messages[:last])

    @property
    def reference(self) -> str:
        """The last assistant turn: what the held-out task metric compares against."""
        if self.text is not None:
            return self.text
        return [m for m in self.messages if m["role"] == "assistant"][-1]["content"]


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


@dataclass(frozen=True)
class DataFile:
    """A file's examples and what the reader did to get them."""

    examples: list[Example]
    reading: Reading


# --------------------------------------------------------------------------- reading
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
    return [{k: _plain(v) for k, v in row.items()} | {ROW_KEY: number}
            for number, row in enumerate(records, start=1)]  # fmt: skip


def _plain(value: object) -> object:
    """A parquet cell as JSON would hold it: arrays (a messages column) as lists."""
    if hasattr(value, "tolist") and hasattr(value, "ndim") and not isinstance(value, str):
        return [_plain(v) for v in value.tolist()] if value.ndim else value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- shapes
def row_number(row: Row) -> int:
    """The row's number in its file, as the reader recorded it."""
    number = row[ROW_KEY]
    assert isinstance(number, int), f"{ROW_KEY} holds {number!r}, not a row number"
    return number


def row_keys(row: Row) -> list[str]:
    return [k for k in row if k != ROW_KEY]


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
    lowered = {k.strip().lower() if isinstance(k, str) and k != ROW_KEY else k: v
               for k, v in row.items()}  # fmt: skip
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
    columns = {ours: theirs if theirs in present else folded.get(theirs.lower(), theirs)
               for ours, theirs in columns.items()}  # fmt: skip
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
            raise DataError(f"{path}: a text file holds paragraphs or '### instruction ###' "
                            f"blocks, not format {fmt}")  # fmt: skip
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
        return (f"{path}: {len(paragraphs(text))} paragraphs, shape text",)
    headers = list(HASH_HEADER.finditer(text))
    notes = [f"{path}: {len(headers)} '### instruction ###' blocks, shape hash_pairs"]
    preamble = text[: headers[0].start()] if headers else ""
    if preamble.strip():
        lines = preamble.count("\n")
        notes.append(f"  lines 1-{lines} come before the first '### ... ###' block and are not "
                     "used (make them a block, or remove them)")  # fmt: skip
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
        raise DataError(f"{path}: label field {label_field!r} is not a column of the file "
                        f"(its columns: {', '.join(row_keys(first))})")  # fmt: skip
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
        notes.append(f"  options {', '.join(c.upper() for c in choices)} listed under each "
                     "instruction as 'A. ...' lines (multiple choice)")  # fmt: skip
    used |= set(choices)
    unused = [k for k in row_keys(first) if k not in used]
    if unused and shape.name not in ("chat", "sharegpt"):
        notes.append(f"  columns not used: {', '.join(unused)} (map one with data.columns / "
                     "--columns to use it)")  # fmt: skip
    wrapped = _count_hash_wrapped(records, shape.instruction) if shape.instruction else 0
    if wrapped:
        notes.append(f"  '### ... ###' delimiters taken off {wrapped} instructions (the chat "
                     "template marks the instruction instead)")  # fmt: skip
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
    roles = ((shape.instruction, "instruction"), (shape.context, "input"),
             (shape.response, "response"), (label or "", "label"))  # fmt: skip
    parts = [f"{key} -> {role}" for key, role in roles if key and key in first]
    return ", ".join(parts) or ", ".join(shape.keys)


def _count_hash_wrapped(records: list[Row], key: str) -> int:
    return sum(isinstance(cell := r.get(key), str) and HASH_WRAPPED.match(cell) is not None
               for r in records)  # fmt: skip


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
    return BY_NAME["sharegpt"] if detected == "chat" and "messages" not in first else (
        BY_NAME[detected])  # fmt: skip


def _no_shape(row: Row) -> str:
    """Why a row fits no shape: the keys it has, the nearest shape's missing field, the shapes
    known, and a mapping of the row's own keys that would fix it."""
    keys = row_keys(row)
    near = [s for s in SHAPES if s.instruction and set(s.keys) & set(keys)]
    near.sort(key=lambda s: len(set(s.keys) - set(keys)))  # fewest missing, then precedence
    missing = [k for k in near[0].keys if k not in keys] if near else ["instruction", "output"]
    used = {k for k in (*near[0].keys, near[0].context, near[0].label) if k} if near else set()
    spare = [k for k in keys if k not in used and isinstance(row[k], str)]
    example = ",".join(f"{want}={spare[i] if i < len(spare) else 'COLUMN'}"
                       for i, want in enumerate(missing))  # fmt: skip
    nearest = f": missing field {missing[0]!r} ({near[0].summary})" if near else ""
    return (f"no known shape in keys ({', '.join(sorted(keys)) or 'none'}){nearest}; known "
            f"shapes: {known_shapes()}; map yours, e.g. --columns {example} (data.columns in a "
            "sweep YAML)")  # fmt: skip


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


def load_examples(
    path: Path,
    *,
    fmt: str = "auto",
    columns: dict[str, str] | None = None,
    system_prompt: str | None = None,
    instruction: str | None = None,
    label_field: str | None = None,
) -> list[Example]:
    """Read a data file and check every row; raise DataError naming the first bad row."""
    settings = DataSettings(fmt=fmt, columns=dict(columns or {}), system_prompt=system_prompt,
                            instruction=instruction, label_field=label_field)  # fmt: skip
    return read_data(path, settings).examples


def read_data(path: Path, settings: DataSettings) -> DataFile:
    """A file's examples, every row checked, and how it was read (its notes say so in words)."""
    records, reading = read_rows(path, settings)
    if isinstance(records, str):
        examples = text_examples(records, reading.shape.name, path)
    else:
        examples = [row_to_example(row, reading, path) for row in records]
    if not examples:
        raise DataError(f"{path}: no examples found")
    if settings.system_prompt:
        examples = [_with_system(e, settings.system_prompt) for e in examples]
    return DataFile(examples, reading)


def text_examples(text: str, fmt: str, path: Path) -> list[Example]:
    """The examples of a .txt/.md file: ``### instruction ###`` blocks, or paragraphs."""
    return hash_pairs_from_text(text, path) if fmt == "hash_pairs" else paragraphs(text)


def _text_value(value: object) -> str | None:
    """A cell as text: strings as they are, numbers and booleans as JSON writes them (a label
    of 1 or true is an answer too); None and NaN (an empty parquet cell) as missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def _field(row: Row, name: str, *, path: Path, shape: Shape,
           optional: bool = False) -> str:  # fmt: skip
    where = f"{path}: row {row[ROW_KEY]}"
    raw = row.get(name)
    value = _text_value(raw)
    if value is None and (raw is None or isinstance(raw, float)):  # absent, null or NaN
        if optional:
            return ""
        if name in row:
            raise DataError(f"{where}: field {name!r} is empty (null)")
        raise DataError(f"{where}: missing field {name!r} (format {shape.name}: {shape.summary}; "
                        f"the row has {', '.join(row_keys(row)) or 'no fields'})")  # fmt: skip
    if value is None:
        raise DataError(f"{where}: field {name!r} must be text, got {type(raw).__name__}")
    if not optional and not value.strip():
        raise DataError(f"{where}: field {name!r} is empty")
    return value


def row_to_example(row: Row, reading: Reading | str, path: Path) -> Example:
    if isinstance(reading, str):
        reading = Reading(BY_NAME[reading])
    shape, number = reading.shape, row_number(row)
    if shape.name in ("chat", "sharegpt"):
        return _chat_example(row, path)
    if shape.name == "text":
        text = _field(row, "text", path=path, shape=shape)
        return Example(text=text, row=number, label=_label_value(row, reading.label_column))
    if shape.name == "hash_pairs":
        text = _field(row, "text", path=path, shape=shape)
        return _split_hash_pair(text, f"{path}: row {number}", number)
    if shape.name == "text_label":
        text = _field(row, "text", path=path, shape=shape)
        label = _field(row, "label", path=path, shape=shape).strip()
        return _pair(f"{reading.instruction}\n\n{text}", label, number, label=label)
    user = _field(row, shape.instruction, path=path, shape=shape)
    if reading.strip_hashes and (match := HASH_WRAPPED.match(user)):
        user = match["inner"]
    extra = (
        _field(row, shape.context, path=path, shape=shape, optional=True) if shape.context else ""
    )
    user = f"{user}\n\n{extra}" if extra.strip() else user
    if reading.choices:
        options = (f"{c.upper()}. {_text_value(row.get(c)) or ''}" for c in reading.choices)
        user = f"{user}\n" + "\n".join(options)
    output = _field(row, shape.response, path=path, shape=shape)
    return _pair(user, output, number, label=_label_value(row, reading.label_column))


def _label_value(row: Row, column: str | None) -> str | None:
    return None if column is None else _text_value(row.get(column))


def _pair(user: str, assistant: str, row: int, *, label: str | None = None) -> Example:
    return Example(
        messages=({"role": "user", "content": user}, {"role": "assistant", "content": assistant}),
        row=row,
        label=label,
    )


def _chat_example(row: Row, path: Path) -> Example:
    where = f"{path}: row {row[ROW_KEY]}"
    turns = row.get("messages", row.get("conversations"))
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: missing field 'messages' (format chat: messages: [{{role, "
                        "content}, ...] with at least one assistant turn)")  # fmt: skip
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: messages[{index}] must be an object")
        role = turn.get("role", SHAREGPT_ROLES.get(str(turn.get("from")), turn.get("from")))
        content = turn.get("content", turn.get("value"))
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise DataError(
                f"{where}: messages[{index}] needs role system|user|assistant and text content"
            )
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise DataError(f"{where}: no assistant turn to learn from (missing response)")
    return Example(messages=tuple(messages), row=row_number(row))


def _split_hash_pair(text: str, where: str, row: int) -> Example:
    match = HASH_HEADER.match(text.strip())
    if not match:
        raise DataError(f"{where}: expected '### instruction ###' then the response")
    response = text.strip()[match.end() :].strip()
    if not response:
        raise DataError(f"{where}: the response after '### {match['instruction']} ###' is empty")
    return _pair(match["instruction"], response, row)


def hash_pairs_from_text(text: str, path: Path) -> list[Example]:
    headers = list(HASH_HEADER.finditer(text))
    examples = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        line = text.count("\n", 0, header.start()) + 1
        chunk = text[header.start() : end]
        examples.append(_split_hash_pair(chunk, f"{path}: line {line}", line))
    return examples


def paragraphs(text: str) -> list[Example]:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text)]
    return [Example(text=b, row=i) for i, b in enumerate((b for b in blocks if b), start=1)]


def _with_system(example: Example, system_prompt: str) -> Example:
    if example.is_text or example.messages[0]["role"] == "system":
        return example
    system = {"role": "system", "content": system_prompt}
    return replace(example, messages=(system, *example.messages))


# --------------------------------------------------------------------------- split + digest
def split_heldout(
    examples: list[Example], *, fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded train/held-out split; stratified by label when every row has one (text with a
    label, or a label column), so the held-out set has each label's share of the rows."""
    size = max(1, round(len(examples) * fraction))
    if size >= len(examples):
        raise DataError(f"val_set_size {fraction} leaves no training rows out of {len(examples)}")
    labels = [e.label for e in examples]
    rng = random.Random(seed)
    if all(label is not None for label in labels) and len(set(labels)) > 1:
        chosen = set(_stratified_pick([str(label) for label in labels], size=size, rng=rng))
    else:
        order = list(range(len(examples)))
        rng.shuffle(order)
        chosen = set(order[:size])
    train = [e for i, e in enumerate(examples) if i not in chosen]
    return train, [e for i, e in enumerate(examples) if i in chosen]


def _stratified_pick(labels: list[str], *, size: int, rng: random.Random) -> list[int]:
    """``size`` row indices, each label's count its share of ``size`` rounded by largest
    remainder (so the counts add up), the rows of each label drawn by ``rng``."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[label].append(index)
    quotas = {label: size * len(rows) / len(labels) for label, rows in sorted(groups.items())}
    counts = {label: math.floor(quota) for label, quota in quotas.items()}
    by_remainder = sorted(quotas, key=lambda label: (counts[label] - quotas[label], label))
    for label in by_remainder[: size - sum(counts.values())]:
        counts[label] += 1
    picked = []
    for label, rows in sorted(groups.items()):
        rng.shuffle(rows)
        picked += rows[: counts[label]]
    return picked


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def choose_task_metric(heldout: list[Example], requested: str) -> str:
    """field_f1 when references are JSON objects, exact_match when short, else rouge_l."""
    if requested != "auto":
        return requested
    references = [e.reference for e in heldout]
    if all(is_json_object(r) for r in references):
        return "field_f1"
    if sum(len(r.split()) for r in references) / len(references) <= 5:
        return "exact_match"
    return "rouge_l"
