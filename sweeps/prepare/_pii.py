"""Redact personal data with typed placeholders: ``<EMAIL>``, ``<PHONE>``, ``<CREDIT_CARD>``,
``<IP_ADDRESS>``, and ``<PERSON>`` where presidio is installed (with a spaCy model).

Patterns run most specific first, so a card number is not also read as a phone number. Card
numbers must pass the Luhn check; IPv4 octets must be at most 255.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sweeps.prepare._records import Record, StepResult

Accept = Callable[[re.Match[str]], bool]  # whether a match is really of its kind
Redactor = Callable[[str], tuple[str, int]]  # text -> (redacted text, items found)

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])"
)
KINDS = ("email", "credit_card", "ip_address", "phone", "person")


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match[0])
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ipv4(match: re.Match[str]) -> bool:
    return all(int(part) <= 255 for part in match[0].split("."))


DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def _phone(match: re.Match[str]) -> bool:
    if DATE.fullmatch(match[0].strip()):
        return False
    digits = re.sub(r"\D", "", match[0])
    separated = bool(re.search(r"[ .()+-]", match[0].strip()))
    return 7 <= len(digits) <= 15 and (separated or len(digits) >= 10)


PATTERNS: list[tuple[str, re.Pattern[str], Accept]] = [
    ("email", EMAIL, lambda m: True),
    ("credit_card", CARD, _card),
    ("ip_address", IPV4, _ipv4),
    ("ip_address", IPV6, lambda m: True),
    ("phone", PHONE, _phone),
]


def redact_text(
    text: str, *, kinds: tuple[str, ...] = KINDS, names: Redactor | None = None
) -> tuple[str, dict[str, int]]:
    """The text with each found item replaced by its placeholder, and counts per kind."""
    counts: dict[str, int] = {}
    for kind, pattern, accept in PATTERNS:
        if kind not in kinds:
            continue

        def replace(match: re.Match[str], kind: str = kind, accept: Accept = accept) -> str:
            if not accept(match):
                return match[0]
            counts[kind] = counts.get(kind, 0) + 1
            return f"<{kind.upper()}>"

        text = pattern.sub(replace, text)
    if names is not None and "person" in kinds:
        text, found = names(text)
        if found:
            counts["person"] = found
    return text, counts


def presidio_names() -> Redactor | None:
    """A person-name redactor from presidio, or None when presidio (or its model) is missing."""
    try:
        from presidio_analyzer import AnalyzerEngine

        engine = AnalyzerEngine()
    except Exception:  # not installed, or no spaCy model to load
        return None

    def redact(text: str) -> tuple[str, int]:
        spans = [r for r in engine.analyze(text=text, entities=["PERSON"], language="en")]
        for span in sorted(spans, key=lambda r: -r.start):
            text = text[: span.start] + "<PERSON>" + text[span.end :]
        return text, len(spans)

    return redact


PRESIDIO_INSTALL = "pip install presidio-analyzer && python -m spacy download en_core_web_lg"
_HINTED: list[bool] = []  # the install command is said once per process


def presidio_hint() -> str:
    """Why names were not redacted: the install command the first time, then the bare reason."""
    if _HINTED:
        return "names need presidio (optional)"
    _HINTED.append(True)
    return f"names need presidio (optional): {PRESIDIO_INSTALL}"


def redact(records: list[Record], *, kinds: tuple[str, ...]) -> tuple[list[Record], StepResult]:
    result = StepResult("redact", rows_in=len(records))
    names = presidio_names() if "person" in kinds else None
    if "person" in kinds and names is None:
        result.count("rows not checked for person names", len(records))
        result.notes.append(presidio_hint())
    out = []
    for record in records:
        texts, found = [], dict[str, int]()
        for text in record.texts():
            new, counts = redact_text(text, kinds=kinds, names=names)
            texts.append(new)
            for kind, n in counts.items():
                found[kind] = found.get(kind, 0) + n
        if found:
            new_record = record.with_texts(texts)
            result.changed.append((record, new_record))
            for kind, n in found.items():
                result.count(f"<{kind.upper()}>", n)
            record = new_record
        out.append(record)
    result.rows_out = len(out)
    return out, result
