"""Paired comparisons: McNemar on 0/1 scores, a paired bootstrap interval on graded ones."""

from __future__ import annotations

import random

import pytest

from evals.paired import BOOTSTRAP, MCNEMAR, compare_paired


def items(values: list[float]) -> dict[str, float]:
    return {f"row{i}": v for i, v in enumerate(values)}


def test_mcnemar_on_discordant_pairs_decides_for_0_1_scores() -> None:
    """Ten items the candidate gets right that the reference missed, none the other way:
    p = 2 * 0.5**10."""
    reference = items([0.0] * 10 + [1.0] * 15 + [0.0] * 15)
    candidate = items([1.0] * 10 + [1.0] * 15 + [0.0] * 15)
    result = compare_paired(candidate, reference)
    assert result.test == MCNEMAR and result.n == 40
    assert (result.candidate_better, result.reference_better, result.ties) == (10, 0, 30)
    assert (result.mean_candidate, result.mean_reference) == (0.625, 0.375)
    assert result.p_value == pytest.approx(2 * 0.5**10)
    assert result.delta == pytest.approx(0.25) and result.improves()
    flipped = compare_paired(reference, candidate)  # the worse one as the candidate
    assert flipped.delta == pytest.approx(-0.25) and not flipped.improves()
    assert flipped.significant() and flipped.improves(mode="min")


def test_a_small_split_of_disagreements_is_not_significant() -> None:
    reference = items([1.0, 1.0, 0.0, 0.0, 0.0] + [1.0] * 20)
    candidate = items([0.0, 0.0, 1.0, 1.0, 1.0] + [1.0] * 20)  # 3 better, 2 worse
    result = compare_paired(candidate, reference)
    assert result.p_value == pytest.approx(1.0)
    assert result.delta > 0 and not result.improves()
    assert result.ci_low < 0 < result.ci_high


def test_graded_scores_use_the_bootstrap_interval() -> None:
    rng = random.Random(0)
    base = [rng.random() for _ in range(60)]
    better = compare_paired(items([v + 0.1 + rng.gauss(0, 0.05) for v in base]), items(base))
    assert better.test == BOOTSTRAP and better.p_value is None
    assert 0 < better.ci_low < better.delta < better.ci_high and better.improves()
    noise = compare_paired(items([v + rng.gauss(0, 0.05) for v in base]), items(base))
    assert noise.ci_low < 0 < noise.ci_high and not noise.improves()
    # lower is better (a loss): a drop is the improvement
    assert compare_paired(items([v - 0.2 for v in base]), items(base)).improves(mode="min")


def test_the_interval_is_seeded_and_a_constant_difference_is_exact() -> None:
    rng = random.Random(1)
    a, b = items([rng.random() for _ in range(30)]), items([rng.random() for _ in range(30)])
    assert compare_paired(a, b, seed=3) == compare_paired(a, b, seed=3)
    shifted = compare_paired({k: v + 0.5 for k, v in a.items()}, a)
    assert (shifted.ci_low, shifted.ci_high) == pytest.approx((0.5, 0.5))


def test_only_items_scored_by_both_are_compared() -> None:
    result = compare_paired({"y": 1.0, "z": 1.0, "w": 0.0}, {"x": 1.0, "y": 0.0, "z": 1.0})
    assert result.n == 2 and result.candidate_better == 1
    with pytest.raises(ValueError, match="no item in common"):
        compare_paired({"x": 1.0}, {"y": 1.0})
