"""Pairwise LLM-as-judge: the rubric, the question put to the judge, the strict reading of its
verdict, and one item's outcome from the two orders it was asked in.

Each held-out row is judged twice, A's output first and then B's first, to cancel position bias
(as LangSmith's and Phoenix's pairwise evaluators do). An order's verdict is ``first``,
``second`` or ``tie``, read strictly from the answer's last line; anything else is unreadable,
and counted as such. The row's outcome (A's view) is the sign of the two orders' votes summed:
a judge that always answers "first" votes A then B, which is a tie, and it agrees with itself
across the orders on no row.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evals.preference import A_BETTER, B_BETTER, TIE

FIRST, SECOND = "first", "second"
VERDICTS = (FIRST, SECOND, "tie")
# the last line: "Verdict: first" (markdown emphasis, quotes and a full stop allowed around it)
VERDICT_LINE = re.compile(
    r"^(?:final\s+)?(?:verdict|answer|winner)?\s*[:=\-]?\s*(first|second|tie)$", re.IGNORECASE
)

DEFAULT_CRITERIA = {  # the fine-tuning guides' criteria for A/B and LLM-as-judge evaluation
    "correct": "The answer is right for the prompt; where a reference answer is given, it agrees "
    "with it in substance.",
    "specific": "It answers exactly what was asked, with the needed detail and nothing made up.",
    "format": "It is in the format the prompt requests (e.g. valid JSON with the asked fields).",
    "tone": "Its tone and length suit the request.",
}


class Rubric(BaseModel):
    """What the judge weighs, in order of importance; a YAML file of this shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criteria: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CRITERIA), min_length=1)
    instructions: str = Field("", description="Anything else the judge should know.")

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class RubricError(ValueError):
    """A rubric file that cannot be used: one line naming the file and the fix."""


def load_rubric(path: Path | None) -> Rubric:
    if path is None:
        return Rubric()
    try:
        raw = yaml.safe_load(path.read_text())
        return Rubric.model_validate(raw or {})
    except (OSError, yaml.YAMLError) as exc:
        raise RubricError(f"{path}: cannot read the rubric ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise RubricError(
            f"{path}: {where}: {first['msg']} (a rubric is criteria: {{name: what it asks}} and "
            "optional instructions: text)"
        ) from None


@dataclass(frozen=True)
class JudgeItem:
    """One held-out row as the judge sees it: the prompt's turns, the reference, two outputs."""

    id: str
    prompt: str  # the conversation as text (system and user turns)
    reference: str
    a: str
    b: str


def judge_messages(
    prompt: str, *, first: str, second: str, reference: str, rubric: Rubric
) -> list[dict[str, str]]:
    """The chat messages that ask for one verdict on (first, second)."""
    criteria = "\n".join(f"- {name}: {text}" for name, text in rubric.criteria.items())
    extra = f"\n{rubric.instructions.strip()}\n" if rubric.instructions.strip() else ""
    ref = f"\n[Reference answer]\n{reference}\n" if reference.strip() else ""
    user = (
        "Two assistants answered the same prompt. Judge which answer is better on these "
        f"criteria, most important first:\n{criteria}\n{extra}"
        "Do not favour an answer for its position or its length. If they are equally good "
        f"(or equally bad), it is a tie.\n\n[Prompt]\n{prompt}\n{ref}\n[First answer]\n{first}\n\n"
        f"[Second answer]\n{second}\n\n"
        'Explain briefly, then end with one line that is exactly "Verdict: first", '
        '"Verdict: second" or "Verdict: tie".'
    )
    return [
        {"role": "system", "content": "You are a careful, impartial judge of answers."},
        {"role": "user", "content": user},
    ]


def parse_verdict(answer: str) -> str | None:
    """``first``, ``second`` or ``tie`` from the answer's last non-empty line; None otherwise."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1].strip("*_`\"' .").strip()
    match = VERDICT_LINE.match(last.replace("*", "").strip())
    return match.group(1).lower() if match else None


def rationale(answer: str) -> str:
    """The answer without its verdict line."""
    lines = answer.strip().splitlines()
    return "\n".join(lines[:-1]).strip() if lines and parse_verdict(answer) else answer.strip()


def vote(verdict: str | None, *, a_first: bool) -> int | None:
    """One order's verdict as A's vote: +1, 0 or -1 (None: unreadable)."""
    if verdict is None:
        return None
    if verdict == "tie":
        return TIE
    a_won = (verdict == FIRST) == a_first
    return A_BETTER if a_won else B_BETTER


def combine(ab: str | None, ba: str | None) -> int | None:
    """The row's outcome from the (A, B) and (B, A) verdicts: the sign of the votes' sum.
    None when either order's verdict is unreadable."""
    first, second = vote(ab, a_first=True), vote(ba, a_first=False)
    if first is None or second is None:
        return None
    total = first + second
    return A_BETTER if total > 0 else B_BETTER if total < 0 else TIE


def self_agreement(pairs: Sequence[tuple[str | None, str | None]]) -> tuple[float, int]:
    """The share of rows where both orders' verdicts were readable and gave the same vote for A,
    over those rows, and how many there were."""
    votes = [(vote(ab, a_first=True), vote(ba, a_first=False)) for ab, ba in pairs]
    both = [(x, y) for x, y in votes if x is not None and y is not None]
    if not both:
        return float("nan"), 0
    return sum(x == y for x, y in both) / len(both), len(both)


def cache_key(identity: str, messages: list[dict[str, str]]) -> str:
    """One question to one judge: the judge's identity and the exact messages."""
    text = json.dumps([identity, messages], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
