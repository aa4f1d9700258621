"""Power of the paired benchmark comparison: exact McNemar power, detectable drops, sample sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evals.power import (
    ALPHA,
    BINARY,
    GRADED,
    PLANNING_CHURN,
    PLANNING_SD,
    POWER,
    Resolution,
    detectable_drop,
    documents_needed,
    look_alpha,
    look_sizes,
    mcnemar_power,
    observed_spread,
    planning_spread,
    resolution,
)


def simulated_power(n: int, *, drop: float, churn: float, runs: int, seed: int) -> float:
    """Documents drawn one by one (worse / better / tied), each run judged by scipy's binomtest."""
    rng = np.random.default_rng(seed)
    draws = rng.random((runs, n))
    worse = (draws < churn / 2 + drop).sum(axis=1)
    better = ((draws >= churn / 2 + drop) & (draws < churn + drop)).sum(axis=1)
    p_values: dict[tuple[int, int], float] = {}
    rejected = 0
    for w, b in zip(worse.tolist(), better.tolist(), strict=True):
        if w + b and (w, b) not in p_values:
            p_values[w, b] = stats.binomtest(w, w + b).pvalue
        rejected += w > b and p_values[w, b] < ALPHA
    return rejected / runs


@pytest.mark.parametrize(("n", "drop", "churn"), [(60, 0.15, 0.10), (200, 0.05, 0.15)])
def test_mcnemar_power_matches_a_simulation_with_the_real_test(
    n: int, drop: float, churn: float
) -> None:
    exact = mcnemar_power(n, drop=drop, churn=churn)
    assert 0.2 < exact < 0.9  # a point where the power is informative, not saturated
    assert exact == pytest.approx(
        simulated_power(n, drop=drop, churn=churn, runs=4000, seed=7), abs=0.03
    )


def test_mcnemar_power_by_hand_when_every_document_is_discordant() -> None:
    """No churn, drop 1: every document is worse, K = W = n; 6 of 6 gives p = 2/64 < 0.05 but
    5 of 5 gives 2/32 > 0.05. With 10% churn and the largest drop (0.9), all 6 are discordant
    and each is worse with probability 0.95."""
    assert mcnemar_power(5, drop=1.0, churn=0.0) == 0.0
    assert mcnemar_power(6, drop=1.0, churn=0.0) == pytest.approx(1.0)
    assert mcnemar_power(6, drop=5.0, churn=0.1) == pytest.approx(0.95**6)  # drop capped at 0.9
    assert mcnemar_power(200, drop=0.0, churn=0.1) < ALPHA / 2  # no regression: a false alarm
    assert mcnemar_power(0, drop=0.2, churn=0.1) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        mcnemar_power(50, drop=-0.1, churn=0.1)


def test_fewer_than_six_documents_detect_nothing_and_eight_hardly_anything() -> None:
    for n in range(6):
        assert detectable_drop(n, kind=BINARY, spread=0.0) == math.inf
        assert detectable_drop(n, kind=BINARY, spread=0.1) == math.inf
    eight = resolution(8, kind=BINARY, spread=PLANNING_CHURN)
    assert "too few documents" in eight.describe() or eight.detectable > 0.5
    assert eight.describe() == (
        "too few documents to detect a regression (8 documents; McNemar needs at least 6"
        " discordant documents)"
    )
    assert not eight.resolves(0.9)


def test_detectable_drop_is_the_smallest_powered_drop_on_the_grid() -> None:
    drop = detectable_drop(150, kind=BINARY, spread=0.1)
    assert drop == round(drop, 3)
    assert mcnemar_power(150, drop=drop, churn=0.1) >= POWER
    assert mcnemar_power(150, drop=drop - 0.001, churn=0.1) < POWER


@pytest.mark.parametrize("churn", [0.05, 0.10, 0.20])
def test_the_detectable_drop_shrinks_with_more_documents(churn: float) -> None:
    for n in (20, 50, 100, 300, 1000):
        small = detectable_drop(n, kind=BINARY, spread=churn)
        assert detectable_drop(4 * n, kind=BINARY, spread=churn) < small


def test_a_five_point_drop_needs_hundreds_of_documents_and_fifteen_points_far_fewer() -> None:
    """The exact test is conservative, so it needs at least the normal approximation's count
    (Connor 1987: p = churn + drop discordant, n = (z_a sqrt(p) + z_b sqrt(p - drop^2))^2 / drop^2:
    468 at 10% churn, 625 at 15%), and not much more."""
    z_a, z_b = stats.norm.ppf(1 - ALPHA / 2), stats.norm.ppf(POWER)
    for churn in (0.10, 0.15):
        p = churn + 0.05
        approximate = (z_a * math.sqrt(p) + z_b * math.sqrt(p - 0.05**2)) ** 2 / 0.05**2
        needed = documents_needed(0.05, kind=BINARY, spread=churn)
        assert 250 <= approximate <= needed <= min(800, 1.2 * approximate)
        assert documents_needed(0.15, kind=BINARY, spread=churn) < 150
    assert documents_needed(0.05, kind=BINARY, spread=0.15) > documents_needed(
        0.05, kind=BINARY, spread=0.10
    )


@pytest.mark.parametrize(("drop", "churn"), [(0.05, 0.10), (0.15, 0.15), (0.08, 0.30)])
def test_documents_needed_is_the_smallest_count_powered_over_its_window(
    drop: float, churn: float
) -> None:
    n = documents_needed(drop, kind=BINARY, spread=churn)
    assert detectable_drop(n, kind=BINARY, spread=churn) <= drop
    powers = {m: mcnemar_power(m, drop=drop, churn=churn) for m in range(n - 1, n * 5 // 4 + 1)}
    assert all(powers[m] >= POWER for m in range(n, math.floor(1.25 * n) + 1))
    assert any(powers[m] < POWER for m in range(n - 1, math.floor(1.25 * (n - 1)) + 1))


def test_documents_needed_refuses_the_impossible() -> None:
    with pytest.raises(ValueError, match="more than 1000 documents"):
        documents_needed(0.02, kind=BINARY, spread=0.10, limit=1000)
    with pytest.raises(ValueError, match="not detectable"):
        documents_needed(0.95, kind=BINARY, spread=0.10)
    with pytest.raises(ValueError, match="positive"):
        documents_needed(0.0, kind=GRADED, spread=0.1)


def test_graded_scores_use_the_z_test_closed_form() -> None:
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert detectable_drop(150, kind=GRADED, spread=0.1) == pytest.approx(z * 0.1 / math.sqrt(150))
    assert detectable_drop(150, kind=GRADED, spread=0.1) == pytest.approx(0.02288, abs=1e-5)
    assert detectable_drop(1, kind=GRADED, spread=0.1) == math.inf
    needed = documents_needed(0.05, kind=GRADED, spread=0.1)
    assert needed == math.ceil((z * 0.1 / 0.05) ** 2) == 32
    assert detectable_drop(needed, kind=GRADED, spread=0.1) <= 0.05
    assert detectable_drop(needed - 1, kind=GRADED, spread=0.1) > 0.05
    with pytest.raises(ValueError, match="needs 32 > 10 documents"):
        documents_needed(0.05, kind=GRADED, spread=0.1, limit=10)


def test_resolution_describes_itself() -> None:
    binary = resolution(150, kind=BINARY, spread=0.1)
    assert binary.detectable == detectable_drop(150, kind=BINARY, spread=0.1)
    points = f"{binary.detectable * 100:.1f}"
    assert binary.describe() == (
        f"detects a drop of {points} points or more (80% power, alpha 0.05, paired McNemar,"
        " 150 documents, 10% churn)"
    )
    assert binary.resolves(binary.detectable) and not binary.resolves(binary.detectable - 0.001)
    graded = resolution(150, kind=GRADED, spread=0.1)
    assert graded.describe() == (
        "detects a drop of 2.3 points or more (80% power, alpha 0.05, paired bootstrap,"
        " 150 documents, sd 0.100)"
    )
    assert Resolution(1, GRADED, 0.1, math.inf).describe() == (
        "too few documents to detect a regression (1 document)"
    )
    with pytest.raises(ValueError, match="unknown kind"):
        resolution(10, kind="ordinal", spread=0.1)


def test_sequential_looks_split_alpha_and_grow_geometrically() -> None:
    assert look_alpha(1) == ALPHA and look_alpha(4) == pytest.approx(0.0125)
    assert look_alpha(2, alpha=0.1) == pytest.approx(0.05)
    assert look_sizes(500, first=100, looks=3) == [100, 224, 500]
    assert look_sizes(1000, first=10, looks=3) == [10, 100, 1000]
    assert look_sizes(12, first=10, looks=5) == [10, 11, 12]  # rounding duplicates merged
    assert look_sizes(300, first=100, looks=1) == [300]
    with pytest.raises(ValueError):
        look_alpha(0)
    with pytest.raises(ValueError):
        look_sizes(50, first=100, looks=2)


def test_observed_and_planning_spreads() -> None:
    assert observed_spread([1, 0, 0, -1, 0, 0, 0, 0, 0, 0], kind=BINARY) == pytest.approx(0.2)
    assert observed_spread([0.1, -0.1, 0.3], kind=GRADED) == pytest.approx(0.2)  # ddof=1
    assert observed_spread([1.0], kind=BINARY) is None
    assert observed_spread([], kind=GRADED) is None
    with pytest.raises(ValueError):
        observed_spread([0.5, 0.0], kind=BINARY)
    assert planning_spread(BINARY) == PLANNING_CHURN
    assert planning_spread(GRADED, 0.3, n_observed=29) == PLANNING_SD  # too few to trust
    assert planning_spread(GRADED, 0.3, n_observed=30) == 0.3
    assert planning_spread(BINARY, 0.04, n_observed=500) == PLANNING_CHURN  # never below default
    assert planning_spread(BINARY, 0.25, n_observed=500) == 0.25
