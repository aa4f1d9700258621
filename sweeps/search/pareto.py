"""Several objectives at once: Pareto dominance, MO-ASHA's stopping rule, the front and its knee.

Standard library only: the scheduler (``sweeps/tune/moasha.py``), the sweep's state (which trial
is best), the display and the replay benchmark all read these.

Every point is a tuple of *losses*: each goal's value, negated where the goal is maximised, so
lower is better in every place. A missing value (a benchmark delta before a trial's last rung,
say) is None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Point = tuple[float | None, ...]
# A multi-objective study trial's rungs, as a user attribute ({rung: [each objective's value]}):
# Optuna's intermediate values are one number per step, and its TPE fails on them in such a study
RUNG_VALUES = "rung_values"


@dataclass(frozen=True)
class Goal:
    """One objective of a sweep: a logged metric, and whether it is maximised or minimised."""

    metric: str
    mode: Literal["min", "max"]

    @classmethod
    def of(cls, metric: str, mode: str) -> Goal:
        """A goal from a mode read as text (state.json, the resolved config): min, else max."""
        return cls(metric, "min" if mode == "min" else "max")

    def loss(self, value: float | None) -> float | None:
        """The value as a loss (lower is better); NaN counts as the worst."""
        if value is None:
            return None
        if math.isnan(value):
            return math.inf
        return -value if self.mode == "max" else value


def describe_goals(goals: Sequence[Goal]) -> str:
    """``objective heldout/field_f1 (max)``, or ``objectives heldout/field_f1 (max),
    cost/device_seconds (min): their Pareto front``."""
    named = ", ".join(f"{g.metric} ({g.mode})" for g in goals)
    return f"objective {named}" if len(goals) == 1 else f"objectives {named}: their Pareto front"


def losses(goals: Sequence[Goal], metrics: Mapping[str, float]) -> Point:
    """A result's point: each goal's metric as a loss, None where the result lacks it."""
    return tuple(goal.loss(metrics.get(goal.metric)) for goal in goals)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is no worse than ``b`` everywhere and better somewhere (losses)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def front_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting: 0 for the points no other dominates, 1 for those only front 0
    dominates, and so on."""
    ranks = [-1] * len(points)
    left, rank = set(range(len(points))), 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def crowding(points: Sequence[Sequence[float]], members: Sequence[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each member within its front: the ends of each objective
    are infinitely far, so a front keeps its extremes first."""
    distance = dict.fromkeys(members, 0.0)
    if len(members) <= 2:
        return dict.fromkeys(members, math.inf)
    for axis in range(len(points[members[0]])):
        ordered = sorted(members, key=lambda i: points[i][axis])
        low, high = points[ordered[0]][axis], points[ordered[-1]][axis]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low or math.isinf(high - low):
            continue
        for before, member, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            distance[member] += (points[after][axis] - points[before][axis]) / (high - low)
    return distance


def mo_order(points: Sequence[Sequence[float]]) -> list[int]:
    """The points best first, as MO-ASHA ranks a rung: by front, then by crowding distance
    (the most isolated first), then by position (the earlier first)."""
    ranks = front_ranks(points)
    spread: dict[int, float] = {}
    for rank in set(ranks):
        spread.update(crowding(points, [i for i, r in enumerate(ranks) if r == rank]))
    return sorted(range(len(points)), key=lambda i: (ranks[i], -spread[i], i))


def keeps_going(point: Point, *, recorded: Sequence[Point], reduction_factor: float) -> bool:
    """MO-ASHA's decision for a trial reaching a rung (Schmucker et al. 2021, the stopping
    variant, as Ray's ASHA is for one objective): it goes on when no trial recorded at the rung
    dominates it, or when it still ranks in the top 1/reduction_factor of the rung (by front,
    then crowding distance) counting itself. A dominated trial outside that share stops.

    Only the goals this result measured count (benchmarks are scored at a trial's last rung
    only), against the recorded trials that measured them too."""
    axes = [i for i, value in enumerate(point) if value is not None]
    if not axes:
        return True
    mine = [float(point[i]) for i in axes]  # type: ignore[arg-type]
    peers = [
        [float(p[i]) for i in axes]  # type: ignore[arg-type]
        for p in recorded
        if all(p[i] is not None for i in axes)
    ]
    if not any(dominates(peer, mine) for peer in peers):
        return True
    points = [*peers, mine]
    share = max(1, int(len(points) / reduction_factor))
    return mo_order(points).index(len(points) - 1) < share


def pareto_front(points: Sequence[Point]) -> list[int]:
    """The indices of the points no other dominates (a missing value counts as the worst)."""
    filled = [[math.inf if v is None else v for v in p] for p in points]
    return [i for i, rank in enumerate(front_ranks(filled)) if rank == 0]


def knee(points: Sequence[Point], members: Sequence[int]) -> int:
    """The front's knee: the member closest to the ideal point once each goal is scaled to
    0..1 over the front (0 its best value there, 1 its worst). Ties go to the earlier member."""
    filled = {i: [math.inf if v is None else v for v in points[i]] for i in members}

    def scaled(i: int) -> float:
        total = 0.0
        for axis, value in enumerate(filled[i]):
            column = [filled[j][axis] for j in members if math.isfinite(filled[j][axis])]
            low, high = (min(column), max(column)) if column else (0.0, 0.0)
            share = (
                1.0
                if not math.isfinite(value)
                else (0.0 if high == low else (value - low) / (high - low))
            )
            total += share * share
        return total

    return min(members, key=lambda i: (scaled(i), members.index(i)))
