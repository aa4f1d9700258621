"""Replay a search on recorded learning curves, with the sweep's own searcher and scheduler.

A sweep's choices come from two objects and the order in which rung results reach them: the
Optuna searcher (``optuna_search``: PruneAwareOptunaSearch with the configured sampler) and Ray
Tune's scheduler (``build_scheduler``: ASHA, or none). A replay builds both exactly as a sweep
does and feeds them the rungs of a table of real training curves (perf/lora_curves.csv), in the
order those rungs would arrive on ``search.max_concurrent`` slots, from the seconds recorded for
them. Only the trial runner is simulated: a trial "runs" by reading its rungs from the table, so
a 48-trial search replays in about a second instead of hours.

The calls follow Tune's controller: every rung goes to ``scheduler.on_trial_result``; a rung it
lets continue goes to ``searcher.on_trial_result``; the rung a trial ends on (stopped early or
its last) goes to ``scheduler.on_trial_complete`` and ``searcher.on_trial_complete``, which tell
Optuna PRUNED or COMPLETE. With ``also`` (the trial's device-seconds so far, from the table's
seconds) the search is multi-objective and the scheduler MO-ASHA, as in a sweep.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from evals.metric_keys import COST_DEVICE_SECONDS, FINAL_RUNG, RUNG
from sweeps.config import SweepConfig
from sweeps.search.pareto import Goal
from sweeps.search.space import Value
from sweeps.tune.searcher import PruneAwareOptunaSearch, SearchRecipe, optuna_search
from sweeps.tune.tuner import build_scheduler

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

TRAINING_ITERATION = "training_iteration"  # Ray's own count of a trial's results
NO_CONTROLLER = cast("TuneController", None)  # ASHA and FIFO never touch the controller


@dataclass(frozen=True)
class Curve:
    """One configuration's recorded rungs: the metric, and the trial's wall seconds so far."""

    values: tuple[float, ...]
    seconds: tuple[float, ...]


@dataclass(frozen=True)
class Ended:
    """A trial as it ended: its parameters, rungs run, last value and seconds spent."""

    params: dict[str, Value]
    rungs: int
    value: float
    seconds: float
    pruned: bool


@dataclass
class Trace:
    """A replayed search: each trial as it ended, with the compute spent by then (every slot's
    seconds, the running trials' included) and the best value of a completed trial so far
    (-inf, or inf when minimising, before the first)."""

    mode: str
    study: optuna.Study | None = None  # the searcher's study: how Optuna saw each trial
    ended: list[Ended] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)

    def add(self, trial: Ended, *, compute: float) -> None:
        """Record a trial's end; the best moves only for a trial that ran to the end, as a
        sweep's best trial is a completed one."""
        worst = -math.inf if self.mode == "max" else math.inf
        best = self.best[-1] if self.best else worst
        if not trial.pruned:
            best = max(best, trial.value) if self.mode == "max" else min(best, trial.value)
        self.ended.append(trial)
        self.compute.append(compute)
        self.best.append(best)

    @property
    def total_compute(self) -> float:
        return sum(trial.seconds for trial in self.ended)

    def compute_to_reach(self, target: float) -> float | None:
        """The compute spent when the best first reached ``target``; None if it never did."""
        for compute, best in zip(self.compute, self.best, strict=True):
            if (best >= target) if self.mode == "max" else (best <= target):
                return compute
        return None

    def best_within(self, compute: float) -> float | None:
        """The best final value found within ``compute`` seconds of compute (None: no trial
        had run to the end by then)."""
        found = [b for c, b in zip(self.compute, self.best, strict=True) if c <= compute]
        return found[-1] if found and math.isfinite(found[-1]) else None


@dataclass
class _Running:
    trial: Trial
    params: dict[str, Value]
    curve: Curve
    started: float
    rung: int = 0  # the index of the next rung to report


def replay_search(
    config: SweepConfig,
    lookup: Callable[[Mapping[str, Value]], Curve],
    *,
    metric: str,
    mode: str,
    trials: int,
    rungs: int,
    also: Sequence[Goal] = (),
) -> Trace:
    """Run the sweep's search for ``trials`` trials on recorded curves (``lookup`` maps a trial's
    hyperparameters to its curve); return each trial's end and the compute it had cost."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    goals = [Goal.of(metric, mode), *also]
    unknown = [g.metric for g in also if g.metric != COST_DEVICE_SECONDS]
    if unknown:
        raise ValueError(f"a replay knows {metric} and {COST_DEVICE_SECONDS}, not {unknown}")
    searcher = optuna_search(
        SearchRecipe(config, tuple(goals), "replay"), storage=optuna.storages.InMemoryStorage()
    )
    scheduler = build_scheduler(config, max_rungs=rungs, goals=goals)
    scheduler.set_search_properties(metric, mode)
    trace, clock, running = Trace(mode, searcher.study), 0.0, dict[str, _Running]()
    arrivals: list[tuple[float, int, str]] = []
    launched = 0
    while True:
        while len(running) < config.search.max_concurrent and launched < trials:
            run = _start(f"replay_{launched:05d}", searcher=searcher, lookup=lookup, clock=clock)
            if run is None:
                break
            scheduler.on_trial_add(NO_CONTROLLER, run.trial)
            running[run.trial.trial_id] = run
            heapq.heappush(arrivals, (clock + run.curve.seconds[0], launched, run.trial.trial_id))
            launched += 1
        if not arrivals:
            return trace
        clock, order, trial_id = heapq.heappop(arrivals)
        run = running[trial_id]
        if _next_rung(run, searcher=searcher, scheduler=scheduler, metric=metric):
            gap = run.curve.seconds[run.rung] - run.curve.seconds[run.rung - 1]
            heapq.heappush(arrivals, (clock + gap, order, trial_id))
            continue
        del running[trial_id]
        spent = sum(clock - other.started for other in running.values())
        trace.add(_ended(run), compute=trace.total_compute + run.curve.seconds[run.rung] + spent)


def _start(
    trial_id: str,
    *,
    searcher: PruneAwareOptunaSearch,
    lookup: Callable[[Mapping[str, Value]], Curve],
    clock: float,
) -> _Running | None:
    """The searcher's next trial, on its recorded curve; None when the search has no more."""
    suggested = searcher.suggest(trial_id)
    if suggested is None:
        return None
    params = _values(suggested)
    trial = Trial("replay", config=params, trial_id=trial_id, stub=True)
    return _Running(trial, params, lookup(params), clock)


def _ended(run: _Running) -> Ended:
    """A trial as it ended, at the rung it reached (pruned when its curve goes on)."""
    last = run.rung
    values, seconds = run.curve.values, run.curve.seconds
    return Ended(run.params, last + 1, values[last], seconds[last], pruned=last + 1 < len(values))


def _next_rung(
    run: _Running, *, searcher: PruneAwareOptunaSearch, scheduler: TrialScheduler, metric: str
) -> bool:
    """Report the trial's next rung as Tune does; True when the trial goes on to another."""
    index, curve = run.rung, run.curve
    last = index == len(curve.values) - 1
    result: dict[str, object] = {
        RUNG: index + 1,
        TRAINING_ITERATION: index + 1,
        metric: curve.values[index],
        FINAL_RUNG: float(last),
        COST_DEVICE_SECONDS: curve.seconds[index],
    }
    decision = scheduler.on_trial_result(NO_CONTROLLER, run.trial, result)
    if decision == TrialScheduler.CONTINUE and not last:
        searcher.on_trial_result(run.trial.trial_id, result)
        run.rung += 1
        return True
    scheduler.on_trial_complete(NO_CONTROLLER, run.trial, result)
    searcher.on_trial_complete(run.trial.trial_id, result)
    return False


def _values(suggested: Mapping[str, object]) -> dict[str, Value]:
    """A suggestion's hyperparameters (numbers, or a target set's name)."""
    values: dict[str, Value] = {}
    for knob, value in suggested.items():
        if not isinstance(value, (int, float, str)):
            raise TypeError(f"{knob} = {value!r} is not a hyperparameter value")
        values[knob] = value
    return values
