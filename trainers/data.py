"""Users' data in the shapes fine-tuning guides use, normalised to chat turns: a file's examples.

Reading and checking rows needs no torch (``sweep validate`` and ``sweep launch`` check every row
before Ray starts). A file is read into rows by ``trainers/data_readers.py``, and its shape
detected and checked by ``trainers/data_shapes.py`` (see ``SHAPES``); here each row becomes an
``Example``: chat turns whose targets are the assistant turns, or plain text. Then the seeded,
label-stratified held-out split, a file's digest, and the task metric the references call for.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from trainers.data_readers import ROW_KEY, DataError, Row, paragraph_blocks, row_keys, row_number
from trainers.data_shapes import (
    BY_NAME,
    HASH_HEADER,
    HASH_WRAPPED,
    DataSettings,
    Reading,
    Shape,
    read_rows,
)

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


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
class DataFile:
    """A file's examples and what the reader did to get them."""

    examples: list[Example]
    reading: Reading


# --------------------------------------------------------------------------- examples
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
    settings = DataSettings(
        fmt=fmt,
        columns=dict(columns or {}),
        system_prompt=system_prompt,
        instruction=instruction,
        label_field=label_field,
    )
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


def _field(row: Row, name: str, *, path: Path, shape: Shape, optional: bool = False) -> str:
    where = f"{path}: row {row[ROW_KEY]}"
    raw = row.get(name)
    value = _text_value(raw)
    if value is None and (raw is None or isinstance(raw, float)):  # absent, null or NaN
        if optional:
            return ""
        if name in row:
            raise DataError(f"{where}: field {name!r} is empty (null)")
        raise DataError(
            f"{where}: missing field {name!r} (format {shape.name}: {shape.summary}; "
            f"the row has {', '.join(row_keys(row)) or 'no fields'})"
        )
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
        raise DataError(
            f"{where}: missing field 'messages' (format chat: messages: [{{role, "
            "content}, ...] with at least one assistant turn)"
        )
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
    return [Example(text=b, row=i) for i, b in enumerate(paragraph_blocks(text), start=1)]


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
