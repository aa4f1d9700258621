"""Users' data in the formats fine-tuning guides use, normalised to chat turns.

Reading and checking rows needs no torch (``sweep launch`` checks every row before Ray starts).
Formats: instruction/input/output (alpaca), ``### instruction ###`` + response (hash_pairs),
prompt/completion, plain text, and chat messages (``messages`` or ShareGPT ``conversations``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HASH_HEADER = re.compile(r"^###\s*(?P<instruction>.+?)\s*###\s*$", re.MULTILINE)
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
FORMAT_FIELDS = {
    "alpaca": "instruction, input (optional), output",
    "prompt_completion": "prompt, completion",
    "chat": "messages: [{role, content}, ...] with at least one assistant turn",
    "text": "text",
    "hash_pairs": "'### instruction ###' followed by the response",
}


class DataError(ValueError):
    """A data problem, phrased as one line naming the file and row."""


@dataclass(frozen=True)
class Example:
    """One training example: chat turns (targets are the assistant turns), or plain text."""

    messages: tuple[dict[str, str], ...] = ()
    text: str | None = None
    row: int = 0

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


# --------------------------------------------------------------------------- reading
def read_records(path: Path) -> list[dict[str, Any]] | str:
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


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
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
        rows.append(row | {"__row__": number})
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of records (or {{'data': [...]}})")
    rows = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {number}: expected an object, got {type(row).__name__}")
        rows.append(row | {"__row__": number})
    return rows


def _read_table(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot be parsed ({str(exc).splitlines()[0]})") from None
    records = frame.to_dict(orient="records")
    return [dict(row) | {"__row__": number} for number, row in enumerate(records, start=1)]


# --------------------------------------------------------------------------- formats
def detect_format(rows: list[dict[str, Any]] | str) -> str:
    """The format a file's first row (or its text) is in."""
    if isinstance(rows, str):
        return "hash_pairs" if HASH_HEADER.search(rows) else "text"
    if not rows:
        return "alpaca"
    keys = set(rows[0])
    if "messages" in keys or "conversations" in keys:
        return "chat"
    if "instruction" in keys:
        return "alpaca"
    if "prompt" in keys:
        return "prompt_completion"
    if "text" in keys:
        text = rows[0]["text"]
        return "hash_pairs" if isinstance(text, str) and HASH_HEADER.match(text) else "text"
    return "unknown"


def load_examples(
    path: Path,
    *,
    fmt: str = "auto",
    columns: dict[str, str] | None = None,
    system_prompt: str | None = None,
) -> list[Example]:
    """Read a data file and check every row; raise DataError naming the first bad row."""
    records, chosen = read_rows(path, fmt=fmt, columns=columns)
    if isinstance(records, str):
        examples = text_examples(records, chosen, path)
    else:
        examples = [row_to_example(row, chosen, path) for row in records]
    if not examples:
        raise DataError(f"{path}: no examples found")
    if system_prompt:
        examples = [_with_system(e, system_prompt) for e in examples]
    return examples


def read_rows(
    path: Path, *, fmt: str = "auto", columns: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]] | str, str]:
    """A file's rows (columns renamed) or its whole text, and the format they are in; a file in
    no known format is an error naming its fields."""
    records = read_records(path)
    if isinstance(records, list) and columns:
        records = [rename_columns(row, columns) for row in records]
    chosen = detect_format(records) if fmt == "auto" else fmt
    if chosen == "unknown":
        keys = ", ".join(sorted(k for k in records[0] if k != "__row__"))
        raise DataError(
            f"{path}: row 1: no known format in fields ({keys}); expected one of "
            "instruction/output, prompt/completion, messages, text; or map columns "
            "(data.columns in a sweep YAML, --columns for sweep data prepare)"
        )
    return records, chosen


def text_examples(text: str, fmt: str, path: Path) -> list[Example]:
    """The examples of a .txt/.md file: ``### instruction ###`` blocks, or paragraphs."""
    return hash_pairs_from_text(text, path) if fmt == "hash_pairs" else paragraphs(text)


def rename_columns(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    renamed = dict(row)
    for ours, theirs in columns.items():
        if theirs in renamed:
            renamed[ours] = renamed.pop(theirs)
    return renamed


def _field(row: dict[str, Any], name: str, *, path: Path, fmt: str, optional: bool = False) -> str:
    where = f"{path}: row {row['__row__']}"
    if name not in row or row[name] is None:
        if optional:
            return ""
        raise DataError(f"{where}: missing field {name!r} (format {fmt}: {FORMAT_FIELDS[fmt]})")
    value = row[name]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be text, got {type(value).__name__}")
    if not optional and not value.strip():
        raise DataError(f"{where}: field {name!r} is empty")
    return value


def row_to_example(row: dict[str, Any], fmt: str, path: Path) -> Example:
    number = int(row["__row__"])
    if fmt == "alpaca":
        instruction = _field(row, "instruction", path=path, fmt=fmt)
        extra = _field(row, "input", path=path, fmt=fmt, optional=True)
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        output = _field(row, "output", path=path, fmt=fmt)
        return _pair(user, output, number)
    if fmt == "prompt_completion":
        prompt = _field(row, "prompt", path=path, fmt=fmt)
        return _pair(prompt, _field(row, "completion", path=path, fmt=fmt), number)
    if fmt == "text":
        return Example(text=_field(row, "text", path=path, fmt=fmt), row=number)
    if fmt == "hash_pairs":
        return _split_hash_pair(
            _field(row, "text", path=path, fmt=fmt), f"{path}: row {number}", number
        )
    return _chat_example(row, path)


def _pair(user: str, assistant: str, row: int) -> Example:
    return Example(
        messages=({"role": "user", "content": user}, {"role": "assistant", "content": assistant}),
        row=row,
    )


def _chat_example(row: dict[str, Any], path: Path) -> Example:
    where = f"{path}: row {row['__row__']}"
    turns = row.get("messages", row.get("conversations"))
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: missing field 'messages' (format chat: {FORMAT_FIELDS['chat']})")
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
    return Example(messages=tuple(messages), row=int(row["__row__"]))


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
    return Example(messages=(system, *example.messages), row=example.row)


# --------------------------------------------------------------------------- split + digest
def split_heldout(
    examples: list[Example], *, fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded train/held-out split."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    size = max(1, round(len(examples) * fraction))
    if size >= len(examples):
        raise DataError(f"val_set_size {fraction} leaves no training rows out of {len(examples)}")
    held = sorted(order[:size])
    train = sorted(order[size:])
    return [examples[i] for i in train], [examples[i] for i in held]


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
