"""Decontaminate: drop training rows that share a 13-gram with the held-out set or a benchmark.

Text is lowercased and split into words (punctuation dropped), as lm-eval's decontamination
documents; any shared 13-gram counts. Each field is indexed and checked on its own (a question, a
choice, a paragraph of a turn), and system prompts are left out: an instruction or system prompt
that every row shares by design would otherwise join with each row's own text into false hits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from sweeps.prepare._records import Record, StepResult

WORD = re.compile(r"\w+")
PARAGRAPH = re.compile(r"\n\s*\n")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class NgramIndex:
    """The n-grams of every source text, each remembering where it came from."""

    def __init__(self, *, n: int) -> None:
        self.n = n
        self.grams: dict[int, str] = {}

    def add(self, text: str, source: str) -> None:
        tokens = words(text)
        for start in range(len(tokens) - self.n + 1):
            self.grams.setdefault(hash(" ".join(tokens[start : start + self.n])), source)

    def add_files(self, paths: Iterable[Path]) -> None:
        """Every string in every row of these benchmark jsonl files."""
        for path in paths:
            for text, source in benchmark_texts(path):
                self.add(text, source)

    def find(self, text: str) -> str | None:
        """Where the first n-gram of ``text`` that a source shares came from, or None."""
        tokens = words(text)
        for start in range(len(tokens) - self.n + 1):
            found = self.grams.get(hash(" ".join(tokens[start : start + self.n])))
            if found is not None:
                return found
        return None


def fields(record: Record) -> list[str]:
    """The texts that are checked: each paragraph of every turn but the system prompt (an
    Alpaca row's instruction and input are joined by a blank line), or of the plain text."""
    turns = (
        [m["content"] for m in record.messages if m["role"] != "system"]
        if record.messages
        else [record.text or ""]
    )
    return [part for turn in turns for part in PARAGRAPH.split(turn) if part.strip()]


def benchmark_texts(path: Path) -> Iterator[tuple[str, str]]:
    """Every string in every row of a benchmark jsonl file, with ``file:row`` as its source."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                for text in _strings(json.loads(line)):
                    yield text, f"{path.name}:{number}"


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def decontaminate(records: list[Record], index: NgramIndex) -> tuple[list[Record], StepResult]:
    result = StepResult("decontaminate", rows_in=len(records))
    out = []
    for record in records:
        source = next(filter(None, map(index.find, fields(record))), None)
        if source is not None:
            result.removed.append((record, f"shares a {index.n}-gram with {source}"))
            result.count(f"overlap with {source.split(':')[0]}")
            continue
        out.append(record)
    result.rows_out = len(out)
    return out, result
