"""Pareto dominance, MO-ASHA's rule at a rung, the front and its knee (sweeps/search/pareto.py)."""

from __future__ import annotations

import math

import pytest

from sweeps.search.pareto import (
    Goal,
    describe_goals,
    dominates,
    front_ranks,
    keeps_going,
    knee,
    losses,
    mo_order,
    pareto_front,
)

F1_MAX, HOURS_MIN = Goal("heldout/field_f1", "max"), Goal("cost/device_seconds", "min")


def test_a_point_is_each_goal_as_a_loss() -> None:
    metrics = {"heldout/field_f1": 0.8, "cost/device_seconds": 30.0}
    assert losses([F1_MAX, HOURS_MIN], metrics) == (-0.8, 30.0)
    assert losses([F1_MAX, HOURS_MIN], {"cost/device_seconds": 3.0}) == (None, 3.0)
    assert F1_MAX.loss(math.nan) == math.inf  # a NaN is the worst, never the best


def test_dominance_needs_no_worse_everywhere_and_better_somewhere() -> None:
    assert dominates((1, 1), (2, 1)) and not dominates((1, 1), (1, 1))
    assert not dominates((1, 3), (2, 1)) and not dominates((2, 1), (1, 3))


def test_non_dominated_sorting_peels_fronts() -> None:
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (6, 6)]
    assert front_ranks(points) == [0, 0, 0, 1, 2, 3]
    assert pareto_front(points) == [0, 1, 2]
    # within a front the extremes come first (crowding distance), then the earlier point
    assert mo_order(points)[:3] == [0, 2, 1]


def test_a_trial_no_one_dominates_always_goes_on() -> None:
    recorded = [(-0.9, 100.0), (-0.5, 10.0), (-0.7, 50.0)]
    # worse than every trial on f1 but the cheapest: on the front, so it goes on
    assert keeps_going((-0.1, 1.0), recorded=recorded, reduction_factor=4)
    assert keeps_going((-0.2, 20.0), recorded=[], reduction_factor=2)  # the first at a rung


def test_a_dominated_trial_stops_outside_the_top_share_of_its_rung() -> None:
    recorded = [(-0.9, 10.0)]
    assert not keeps_going((-0.5, 20.0), recorded=recorded, reduction_factor=2)
    # with 3 rivals, of which it dominates two, it is 2nd of 4: the top half goes on
    rivals = [(-0.9, 10.0), (-0.2, 90.0), (-0.3, 80.0)]
    assert keeps_going((-0.5, 20.0), recorded=rivals, reduction_factor=2)
    assert not keeps_going((-0.5, 20.0), recorded=rivals, reduction_factor=4)


def test_only_the_goals_a_rung_measured_are_compared() -> None:
    """A benchmark delta exists at a trial's last rung only: earlier rungs compare the rest."""
    recorded = [(-0.9, None), (-0.8, 0.5)]
    assert not keeps_going((-0.4, None), recorded=recorded, reduction_factor=3)
    assert keeps_going((-0.95, None), recorded=recorded, reduction_factor=3)
    # measured on an axis no recorded trial has: nothing to compare it with there
    assert keeps_going((None, 0.1), recorded=[(-0.9, None)], reduction_factor=2)


def test_the_knee_is_closest_to_the_ideal_point_once_scaled() -> None:
    # scaled over the front: (0, 1), (0.1, 0.1), (1, 0): the middle one is the knee
    front = [(-0.90, 100.0), (-0.89, 10.0), (-0.80, 0.0)]
    assert knee(front, [0, 1, 2]) == 1
    assert knee([(1.0, 1.0), (1.0, 1.0)], [0, 1]) == 0  # a tie goes to the earlier one
    assert knee([(None, 1.0), (2.0, 1.5), (3.0, 2.0)], [0, 1, 2]) == 1  # missing: the worst


@pytest.mark.parametrize(
    ("goals", "words"),
    [([F1_MAX], "objective heldout/field_f1 (max)"),
     ([F1_MAX, HOURS_MIN], "objectives heldout/field_f1 (max), cost/device_seconds (min): their "
                           "Pareto front")],
)  # fmt: skip
def test_goals_are_described_in_one_line(goals: list[Goal], words: str) -> None:
    assert describe_goals(goals) == words
