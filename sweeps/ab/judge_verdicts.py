"""Rows put to the judge: each held-out row asked in both orders (to cancel position bias), the
answers read strictly into verdicts (an unreadable one is counted, never dropped), and every
answer cached per (judge, messages) under the cache root, so a re-run asks nothing again. The
judge itself, and how a question reaches it, is ``sweeps/ab/judge.py``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from evals.judge import (
    JudgeItem,
    Rubric,
    cache_key,
    combine,
    judge_messages,
    parse_verdict,
    rationale,
    self_agreement,
)
from sweeps.ab.judge import Answer, Asker
from sweeps.console import Say
from sweeps.serving.sides import ItemRow, turns_text
from sweeps.tracking.state import write_json_atomic


# --------------------------------------------------------------------------- judging rows
@dataclass(frozen=True)
class Verdict:
    """One row judged in both orders; ``outcome`` is A's view (None: a verdict was unreadable)."""

    id: str
    ab: str | None  # the verdict with A's output first
    ba: str | None  # with B's first
    outcome: int | None
    answer_ab: str
    answer_ba: str
    finish: tuple[str, str] = ("stop", "stop")  # how each answer ended: stop | length | error

    def row(self) -> dict[str, object]:
        return {
            **asdict(self),
            "rationale_ab": rationale(self.answer_ab),
            "rationale_ba": rationale(self.answer_ba),
        }


@dataclass(frozen=True)
class JudgeRun:
    verdicts: list[Verdict]
    asked: int  # questions put to the judge
    cached: int  # answers read back from the cache

    @property
    def outcomes(self) -> dict[str, int]:
        return {v.id: v.outcome for v in self.verdicts if v.outcome is not None}

    @property
    def unparsed(self) -> int:
        return sum(v.outcome is None for v in self.verdicts)

    def first_rate(self) -> tuple[float, int]:
        """Position bias: the share of readable, decisive verdicts that chose the answer shown
        first (about half for a judge without it), and how many there were."""
        decisive = [x for v in self.verdicts for x in (v.ab, v.ba) if x in ("first", "second")]
        if not decisive:
            return float("nan"), 0
        return decisive.count("first") / len(decisive), len(decisive)

    def ended(self, how: str) -> int:
        """Answers that ended ``how``: length (cut at judge.max_tokens) or error."""
        return sum(f == how for v in self.verdicts for f in v.finish)

    def agreement(self) -> tuple[float, int]:
        return self_agreement([(v.ab, v.ba) for v in self.verdicts])


def judge_items(
    items: Sequence[JudgeItem],
    *,
    asker: Asker,
    rubric: Rubric,
    parallel: int = 1,
    progress: Say = print,
) -> JudgeRun:
    """Ask the judge about every item in both orders (cached answers are not asked again)."""
    questions = {}
    for item in items:
        for a_first in (True, False):
            first, second = (item.a, item.b) if a_first else (item.b, item.a)
            questions[(item.id, a_first)] = judge_messages(
                item.prompt, first=first, second=second, reference=item.reference, rubric=rubric
            )
    answers, asked = _answers(questions, asker=asker, parallel=parallel, progress=progress)
    verdicts = []
    for item in items:
        ab, ba = answers[(item.id, True)], answers[(item.id, False)]
        pv_ab, pv_ba = parse_verdict(ab.text), parse_verdict(ba.text)
        verdicts.append(
            Verdict(
                item.id,
                pv_ab,
                pv_ba,
                combine(pv_ab, pv_ba),
                ab.text,
                ba.text,
                finish=(ab.finish, ba.finish),
            )
        )
    return JudgeRun(verdicts, asked=asked, cached=len(questions) - asked)


def _answers(
    questions: dict[tuple[str, bool], list[dict[str, str]]],
    *,
    asker: Asker,
    parallel: int,
    progress: Say,
) -> tuple[dict[tuple[str, bool], Answer], int]:
    from trainers.models import cache_root

    directory = cache_root() / "judge"
    paths = {q: directory / f"{cache_key(asker.identity, m)}.json" for q, m in questions.items()}
    answers = {q: _cached(p) for q, p in paths.items() if p.is_file()}
    missing = [q for q in questions if q not in answers]
    if not missing:
        return answers, 0
    progress(
        f"Asking the judge {len(missing)} question(s) "
        f"({len(answers)} answered before, from the cache) ..."
    )
    directory.mkdir(parents=True, exist_ok=True)

    def ask(q: tuple[str, bool]) -> Answer:
        answer = asker.ask(questions[q])
        if answer.finish != "error":  # a refused question is asked again next time
            write_json_atomic(paths[q], {"answer": answer.text, "finish": answer.finish})
        return answer

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        pending = {pool.submit(ask, q): q for q in missing}
        try:
            for future in as_completed(pending):
                answers[pending[future]] = future.result()
        except BaseException:  # the first failure stops the rest: nothing more is sent
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return answers, len(missing)


def _cached(path: Path) -> Answer:
    raw = json.loads(path.read_text())
    return Answer(str(raw["answer"]), finish=str(raw.get("finish", "stop")))


def judge_item(row: ItemRow) -> JudgeItem:
    """A report row as the judge sees it: the turns before the answer, as text."""
    return JudgeItem(row.id, turns_text(row.turns), row.reference, row.a, row.b)
