"""The one schema every input format is normalised to, and what each step reports."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TypedDict


@dataclass
class Record:
    """One example: chat turns (the last assistant turn is the response) or plain text."""

    source: str  # file name, for the report
    row: int  # row (or line) number in that file, counted from 1
    messages: list[dict[str, str]] | None = None
    text: str | None = None
    label: str | None = None

    def copy(self) -> Record:
        return copy.deepcopy(self)

    def texts(self) -> list[str]:
        """Every text the example holds, in order."""
        return [m["content"] for m in self.messages] if self.messages else [self.text or ""]

    def with_texts(self, texts: list[str]) -> Record:
        """The same example with its texts replaced (same order as :meth:`texts`)."""
        new = self.copy()
        if new.messages:
            for message, text in zip(new.messages, texts, strict=True):
                message["content"] = text
        else:
            new.text = texts[0]
        return new

    @property
    def prompt(self) -> str:
        """The turns before the last assistant turn, joined (empty for plain text)."""
        if not self.messages:
            return ""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return "\n".join(m["content"] for m in self.messages[:last] if m["role"] != "system")

    @property
    def response(self) -> str:
        if not self.messages:
            return self.text or ""
        return [m["content"] for m in self.messages if m["role"] == "assistant"][-1]

    @property
    def where(self) -> str:
        return f"{self.source}: row {self.row}"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = (
            {"messages": self.messages} if self.messages else {"text": self.text}
        )
        if self.label is not None:
            out["label"] = self.label
        return out


@dataclass
class StepResult:
    """What one step did: rows it removed (with why), rows it changed, and counters."""

    name: str
    enabled: bool = True
    rows_in: int = 0
    rows_out: int = 0
    removed: list[tuple[Record, str]] = field(default_factory=list)
    changed: list[tuple[Record, Record]] = field(default_factory=list)  # (before, after)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how the step decided (said on the console)
    seconds: float = 0.0

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


class InputFile(TypedDict):
    """One input file, as the manifest and the report list it."""

    path: str
    sha256: str
    format: str
    rows: int
    rejected: int


class OutputFile(TypedDict):
    sha256: str
    rows: int


class StepSummary(TypedDict):
    name: str
    enabled: bool
    rows_in: int
    rows_out: int
    removed: int
    changed: int
    counts: dict[str, int]
    seconds: float


class Manifest(TypedDict, total=False):
    """manifest.json: what went in, what came out, each step's counts, the settings."""

    inputs: list[InputFile]
    benchmark_files: list[str]
    outputs: dict[str, OutputFile]
    steps: list[StepSummary]
    settings: dict[str, object]
    created: str
