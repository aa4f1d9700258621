"""The judge's question, the strict reading of its verdict, both orders combined, the rubric."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.judge import (
    DEFAULT_CRITERIA,
    Rubric,
    RubricError,
    cache_key,
    combine,
    judge_messages,
    load_rubric,
    parse_verdict,
    rationale,
    self_agreement,
)


def test_verdicts_are_read_strictly_from_the_last_line() -> None:
    assert parse_verdict("The first is right.\nVerdict: first") == "first"
    assert parse_verdict("**Verdict: Second**") == "second"
    assert parse_verdict("reasons\nverdict: tie.") == "tie"
    assert parse_verdict("tie") == "tie"
    for unreadable in ("", "\n\n\n", "I prefer the first one", "Verdict: first\nbut maybe not",
                       "Verdict: both", "Verdict: first or second"):  # fmt: skip
        assert parse_verdict(unreadable) is None, unreadable
    assert rationale("Both are valid JSON.\nVerdict: tie") == "Both are valid JSON."
    assert rationale("no verdict here") == "no verdict here"


def test_both_orders_combine_so_position_bias_is_a_tie() -> None:
    assert combine("first", "second") == 1  # A shown first and preferred, then second and preferred
    assert combine("second", "first") == -1
    assert combine("first", "first") == 0  # always "first": A, then B
    assert combine("first", "tie") == 1 and combine("tie", "tie") == 0
    assert combine(None, "first") is None and combine("second", None) is None
    assert self_agreement([("first", "first")] * 5) == (0.0, 5)
    assert self_agreement([("first", "second"), ("tie", "tie"), (None, "first")]) == (1.0, 2)


def test_the_question_carries_the_rubric_the_reference_and_both_answers() -> None:
    rubric = Rubric(criteria={"valid": "Is it valid JSON?"}, instructions="Ignore whitespace.")
    messages = judge_messages("user: Ann, ann@x.org", first='{"name": "Ann"}', second="Ann",
                              reference='{"name": "Ann", "email": "ann@x.org"}', rubric=rubric)  # fmt: skip
    text = messages[-1]["content"]
    assert "- valid: Is it valid JSON?" in text and "Ignore whitespace." in text
    assert text.index('[First answer]\n{"name": "Ann"}') < text.index("[Second answer]\nAnn")
    assert "[Reference answer]" in text and 'Verdict: first", "Verdict: second"' in text
    without = judge_messages("p", first="a", second="b", reference="", rubric=Rubric())
    assert "[Reference answer]" not in without[-1]["content"]
    assert all(name in without[-1]["content"] for name in DEFAULT_CRITERIA)
    assert cache_key("judge-1", messages) != cache_key("judge-2", messages)
    assert cache_key("judge-1", messages) == cache_key("judge-1", list(messages))


def test_a_rubric_file_is_read_safely_and_refused_in_one_line(tmp_path: Path) -> None:
    good = tmp_path / "rubric.yaml"
    good.write_text("criteria:\n  correct: right fields\n  brief: no chatter\n")
    assert list(load_rubric(good).criteria) == ["correct", "brief"]
    assert load_rubric(None) == Rubric()
    bad = tmp_path / "bad.yaml"
    bad.write_text("criteria: {}\ntone: calm\n")
    with pytest.raises(RubricError) as refused:
        load_rubric(bad)
    assert str(bad) in str(refused.value) and "\n" not in str(refused.value)
    evil = tmp_path / "evil.yaml"
    evil.write_text("criteria: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RubricError):
        load_rubric(evil)
