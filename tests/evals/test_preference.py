"""Win/tie/loss with the Wilson interval and the sign test, kappa, and Bradley-Terry."""

from __future__ import annotations

import math
import random

import pytest

from evals.gate import promotion_gate
from evals.preference import bradley_terry, cohen_kappa, summarize, wilson_interval


def test_a_clear_preference_is_significant_and_a_split_is_not() -> None:
    clear = summarize({str(i): 1 for i in range(12)} | {"x": 0})
    assert (clear.wins, clear.ties, clear.losses, clear.n) == (12, 1, 0, 13)
    assert clear.win_rate == 1.0 and clear.significant and clear.a_better
    assert clear.p_value == pytest.approx(2 * 0.5**12)  # the sign test on 12 decisive rows
    split = summarize({str(i): 1 if i % 2 else -1 for i in range(20)}, unparsed=3)
    assert split.win_rate == 0.5 and not split.significant and split.unparsed == 3
    assert split.win_rate_low < 0.5 < split.win_rate_high
    assert "3 without a verdict" in split.describe()
    losing = summarize({str(i): -1 for i in range(12)})
    assert losing.significant and not losing.a_better
    empty = summarize({})
    assert empty.n == 0 and math.isnan(empty.win_rate) and not empty.significant


def test_the_wilson_interval_matches_its_formula() -> None:
    low, high = wilson_interval(9, 11)
    z, p, n = 1.959964, 9 / 11, 11
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-4)


def test_cohens_kappa_is_one_for_agreement_and_zero_for_chance() -> None:
    same = {str(i): [1, 0, -1][i % 3] for i in range(9)}
    assert cohen_kappa(same, same) == (pytest.approx(1.0), 9)
    always_a = {str(i): 1 for i in range(9)}
    assert cohen_kappa(same, always_a)[0] == pytest.approx(0.0)
    assert math.isnan(cohen_kappa(same, {"other": 1})[0])
    assert math.isnan(cohen_kappa(always_a, always_a)[0])  # one label: undefined, not 1


def test_bradley_terry_ranks_models_by_their_true_strength() -> None:
    rng = random.Random(0)
    strength = {"strong": 4.0, "middle": 2.0, "weak": 1.0}
    matches = []
    for _ in range(400):
        x, y = rng.sample(sorted(strength), 2)
        matches.append(
            (x, y, 1 if rng.random() < strength[x] / (strength[x] + strength[y]) else -1)
        )
    ranked = bradley_terry(matches, resamples=100)
    assert [s.model for s in ranked] == ["strong", "middle", "weak"]
    gaps = {s.model: s.score for s in ranked}
    assert gaps["strong"] - gaps["weak"] == pytest.approx(math.log(4), abs=0.35)
    assert all(s.low <= s.score <= s.high for s in ranked)
    assert ranked[0].low > ranked[-1].high  # the intervals separate the strongest and weakest


def test_the_gate_needs_each_required_evidence_to_prefer_the_candidate() -> None:
    candidate, incumbent = {str(i): 1.0 for i in range(20)}, {str(i): 0.0 for i in range(20)}
    preferred = summarize({str(i): 1 for i in range(12)})
    tie = summarize({str(i): 0 for i in range(12)})
    passed = promotion_gate(candidate, incumbent, metric="exact_match", against="base",
                            require=["heldout", "judge"], preferences={"judge": preferred})  # fmt: skip
    assert passed.promote and passed.carried_by == ["heldout", "judge"]
    refused = promotion_gate(candidate, incumbent, metric="exact_match", against="base",
                             require=["heldout", "judge", "human"],
                             preferences={"judge": tie, "human": "no human ratings"})  # fmt: skip
    assert not refused.promote and refused.carried_by == ["heldout"]
    assert any(r.startswith("judge: not significantly preferred") for r in refused.refusals)
    assert "human: no human ratings" in refused.refusals
    judge_only = promotion_gate(incumbent, candidate, metric="exact_match", against="base",
                                require=["judge"], preferences={"judge": preferred})  # fmt: skip
    assert judge_only.promote and judge_only.carried_by == ["judge"]  # held-out not required
