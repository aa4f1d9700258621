"""Early stopping for several objectives at once: MO-ASHA as a Ray Tune scheduler.

Ray's schedulers compare trials on one metric (ray#8018), and Optuna's pruners do not run in a
multi-objective study (optuna#2792). This is the stopping variant of asynchronous successive
halving that Ray's ASHAScheduler implements, with its single ranking replaced by MO-ASHA's
(Schmucker et al. 2021): the trials recorded at a rung are ranked by non-dominated sorting, then
by crowding distance (``sweeps/search/pareto.py``). A trial goes on from a rung when no trial recorded
there dominates it, or when it still ranks in the top 1/reduction_factor of the rung; so a trial
is only ever stopped when another trial beat it on every objective at that rung.

The rungs are ASHA's: grace_period x reduction_factor^k, up to max_t, on the trial's own rung
count (``rung``), and a trial is decided once per rung, at the highest rung it has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from evals.metric_keys import RUNG
from sweeps.search.pareto import Goal, Point, keeps_going, losses

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController


def milestones(*, grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """ASHA's rungs, as Ray's ASHAScheduler places them: grace_period x reduction_factor^k up
    to max_t."""
    out, rung = [], float(grace_period)
    while rung <= max_t:
        out.append(int(rung))
        rung *= reduction_factor
    return out


class MultiObjectiveASHA(FIFOScheduler):
    """MO-ASHA on the trials' rungs: stop a trial at a rung only when it is dominated there and
    outside the rung's top 1/reduction_factor (see the module's docstring)."""

    def __init__(
        self, *, goals: Sequence[Goal], max_t: int, grace_period: int, reduction_factor: float
    ) -> None:
        super().__init__()
        self.goals = tuple(goals)
        self.max_t = max_t
        self.reduction_factor = reduction_factor
        self.rungs = milestones(
            grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_t
        )
        self.recorded: dict[int, dict[str, Point]] = {rung: {} for rung in self.rungs}
        self.stopped = 0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: object) -> bool:
        """The goals are the scheduler's own (Tune's single metric is unset for these sweeps)."""
        return True

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, object]
    ) -> str:
        rung = result.get(RUNG)
        if not isinstance(rung, int | float):
            return TrialScheduler.CONTINUE
        if rung >= self.max_t:
            return TrialScheduler.STOP  # its last rung, as ASHA ends a trial at max_t
        action = self.decide(trial.trial_id, rung=int(rung), result=result)
        self.stopped += action == TrialScheduler.STOP
        return action

    def decide(self, trial_id: str, *, rung: int, result: dict[str, object]) -> str:
        """Record the trial at the highest rung it passed and has not been decided at, and go on
        or stop by MO-ASHA's rule there."""
        for milestone in reversed(self.rungs):
            recorded = self.recorded[milestone]
            if rung < milestone or trial_id in recorded:
                continue
            values = {k: float(v) for k, v in result.items() if isinstance(v, int | float)}
            point = losses(self.goals, values)
            goes_on = keeps_going(
                point, recorded=list(recorded.values()), reduction_factor=self.reduction_factor
            )
            recorded[trial_id] = point
            return TrialScheduler.CONTINUE if goes_on else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        sizes = ", ".join(f"rung {r}: {len(self.recorded[r])}" for r in self.rungs)
        return f"MultiObjectiveASHA: {self.stopped} stopped ({sizes})"
