"""Clean text: Unicode NFC, control characters, whitespace; optionally speaker tags and fillers."""

from __future__ import annotations

import re
import unicodedata

from sweeps.prepare._records import Record, StepResult

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
# "SPEAKER_1:", "[speaker 2]", "Spk3 -" at the start of a line -> "Speaker 1:"
SPEAKER = re.compile(r"(?im)^[ \t]*\[?(?:speaker|spk)[ _-]?(\d+)\]?[ \t]*[:\-]?[ \t]*")
FILLERS = re.compile(r"(?i)(?<![\w'])(?:u+m+|u+h+|e+r+m+|h+m+|uhm+|you know)(?![\w'])[,.]?[ \t]*")


def clean_text(text: str, *, speaker_tags: bool = False, fillers: bool = False) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("", text)
    if speaker_tags:
        text = SPEAKER.sub(lambda m: f"Speaker {m[1]}: ", text)
    if fillers:
        text = FILLERS.sub("", text)
    lines = [SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean(
    records: list[Record], *, speaker_tags: bool, fillers: bool
) -> tuple[list[Record], StepResult]:
    """Every text cleaned; a row whose text changed is counted (and kept)."""
    result = StepResult("clean", rows_in=len(records))
    out = []
    for record in records:
        texts = record.texts()
        cleaned = [clean_text(t, speaker_tags=speaker_tags, fillers=fillers) for t in texts]
        if cleaned != texts:
            new = record.with_texts(cleaned)
            result.changed.append((record, new))
            result.count("rows changed")
            record = new
        out.append(record)
    result.rows_out = len(out)
    return out, result
