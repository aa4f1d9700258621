"""Benchmarks in looks (the finalist and screening tiers), on the tiny model scored against
itself (a delta of exactly 0)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from evals import sequential
from evals.benchmark_plan import (
    FULL,
    PROXY,
    BenchmarkPlan,
    base_with,
    phase_metrics,
    score_plan,
)
from evals.sequential import (
    ALL,
    CLEARED,
    NO_COLLAPSE,
    finalist_looks,
    score_in_looks,
    score_screening,
    screening_looks,
)
from tests.evals.test_benchmarks import write_rows
from trainers.models import load_causal_lm, load_tokenizer

ROWS = [
    {"id": f"q{i}", "question": f"What is {i} times two?",
     "choices": {"text": [str(2 * i), str(2 * i + 1), str(i)], "label": ["A", "B", "C"]},
     "answerKey": "ABC"[i % 3]}
    for i in range(1, 13)
]  # fmt: skip


@pytest.fixture
def setup(tiny_model: Path, tmp_path: Path) -> tuple[Any, Any, BenchmarkPlan]:
    root = tmp_path / "mirror"
    root.mkdir()
    write_rows(root / "arc_challenge_test.jsonl", ROWS)
    plan = BenchmarkPlan(
        tasks=["arc_challenge"], mirror=str(root), cache=str(tmp_path / "cache"), num_fewshot=0,
        batch_size=4, proxy={}, digests={}, metric_overrides={}, weights={}, guard={},
        finalists=1, dtype="float32",
    )  # fmt: skip
    return load_causal_lm(tiny_model), load_tokenizer(tiny_model), plan


def test_looks_stop_once_the_interval_settles_the_margin_and_go_on_while_it_does_not(
    setup: tuple[Any, Any, BenchmarkPlan], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer, plan = setup
    base, _ = score_plan(model, tokenizer, plan, phase=FULL)
    plan = base_with(plan, base, phase=FULL)
    monkeypatch.setattr(sequential, "FIRST_LOOK", 3)  # looks at 3, 6 and 12 of the 12 documents
    monkeypatch.setattr(sequential, "chance_note", lambda *_: None)  # as if above chance
    # the same model: a delta of 0 everywhere; a margin of 0.5 is cleared at the first look
    scores, looked = score_in_looks(model, tokenizer, plan, task="arc_challenge",
                                    looks=finalist_looks(12), margin=0.5)  # fmt: skip
    assert (looked.documents, looked.looks, looked.stopped) == (3, 1, CLEARED)
    assert len(scores.samples["arc_challenge"]) == 3
    # a margin of 0 is never settled by an interval of [0, 0]: every look, every document
    scores, looked = score_in_looks(model, tokenizer, plan, task="arc_challenge",
                                    looks=finalist_looks(12), margin=0.0)  # fmt: skip
    assert (looked.documents, looked.looks, looked.stopped) == (12, 3, ALL)
    docs = sorted(int(r["doc_id"]) for r in scores.samples["arc_challenge"])
    assert docs == list(range(12))  # each document once, across the looks
    assert scores.metrics["arc_challenge"]["acc_norm"] == pytest.approx(
        base.metrics["arc_challenge"]["acc_norm"]
    )  # the looks pooled: the mean over all 12, as lm-eval's own on the full set
    assert scores.metrics["arc_challenge"]["acc_norm_stderr"] == pytest.approx(
        base.metrics["arc_challenge"]["acc_norm_stderr"], rel=1e-6
    )


def test_a_base_at_chance_stops_after_the_first_look(
    setup: tuple[Any, Any, BenchmarkPlan], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer, plan = setup
    base, _ = score_plan(model, tokenizer, plan, phase=FULL)
    plan = base_with(replace(plan), base, phase=FULL)
    monkeypatch.setattr(sequential, "FIRST_LOOK", 3)
    monkeypatch.setattr(sequential, "chance_note", lambda *_: "at chance")
    _, looked = score_in_looks(model, tokenizer, plan, task="arc_challenge",
                               looks=finalist_looks(12), margin=None)  # fmt: skip
    assert (looked.documents, looked.stopped) == (3, sequential.AT_CHANCE)


def test_screening_takes_half_its_documents_and_stops_once_a_collapse_is_ruled_out(
    setup: tuple[Any, Any, BenchmarkPlan], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer, plan = setup
    monkeypatch.setattr(sequential, "chance_note", lambda *_: None)
    plan = replace(plan, proxy={"arc_challenge": {"arc_challenge": list(range(12))}},
                   guard={"arc_challenge": 0.0}, screen_drop=0.5)  # fmt: skip
    base, _ = score_plan(model, tokenizer, plan, phase=PROXY)
    plan = base_with(plan, base, phase=PROXY)
    assert screening_looks(12, collapse=0.5).sizes == (6, 12)
    # an interval of [0, 0] never clears a margin of 0, but it rules out a 50-point collapse
    scores, looked = score_screening(model, tokenizer, plan)
    assert [(h.documents, h.looks, h.stopped) for h in looked] == [(6, 1, NO_COLLAPSE)]
    assert len(scores.samples["arc_challenge"]) == 6
    assert scores.config["seconds"]["arc_challenge"] > 0
    # the delta is against the base on those 6 documents (0: the same model), not against the
    # base's score on all 12, which differs from the 6's
    metrics = phase_metrics(scores, plan, phase=PROXY, heldout=None, seconds=0.0)
    half = scores.metrics["arc_challenge"]["acc_norm"]
    assert half != plan.base[PROXY]["arc_challenge"]  # else this would prove nothing
    assert metrics["bench/proxy/arc_challenge/delta"] == 0.0
    assert metrics["bench/proxy/arc_challenge/documents"] == 6
    # nor a collapse of 0 points: with the margin of 0 open too, every document in both looks
    plan = replace(plan, screen_drop=0.0)
    _, looked = score_screening(model, tokenizer, plan)
    assert [(h.documents, h.looks, h.stopped) for h in looked] == [(12, 2, ALL)]
    # an unguarded task is scored on its proxy documents in one go
    plan = replace(plan, guard={})
    scores, looked = score_screening(model, tokenizer, plan)
    assert looked == [] and len(scores.samples["arc_challenge"]) == 12
