"""Replaying a search on recorded curves drives the sweep's own searcher and ASHA scheduler
(sweeps/tune/replay.py): trials ASHA stops reach Optuna PRUNED with their rungs, the compute
counts every slot's seconds, and a sampler that learns finds the best region of the table."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from optuna.trial import TrialState

from sweeps.config import SweepConfig, config_from_dict
from sweeps.tune.replay import Curve, Trace, replay_search

RUNGS = 4
METRIC = "heldout/field_f1"


def curve(params: Mapping[str, object]) -> Curve:
    """A learning curve peaking at lr 1e-3; all-linear adapters learn more and cost more."""
    lr = float(str(params["learning_rate"]))
    height = math.exp(-((math.log10(lr) + 3.0) ** 2))
    if params["lora_target_modules"] == "all-linear":
        height *= 1.1
    per_rung = 30.0 if params["lora_target_modules"] == "all-linear" else 20.0
    values = tuple(round(height * (1 - 0.5**k), 6) for k in range(1, RUNGS + 1))
    return Curve(values, tuple(per_rung * k for k in range(1, RUNGS + 1)))


def config(algorithm: str, *, asha: bool, trials: int) -> SweepConfig:
    return config_from_dict({
        "name": "replay", "base_model": "smollm2-135m-instruct", "data": {"train": "t.jsonl"},
        "search_space": {"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
                         "lora_r": [8], "num_epochs": RUNGS,
                         "lora_target_modules": ["attention", "all-linear"]},
        "training": {"evals_per_epoch": 1},
        "search": {"algorithm": algorithm, "num_samples": trials, "max_concurrent": 2,
                   "seed": 3},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2} if asha
        else {"type": "none"},
    })  # fmt: skip


def replay(algorithm: str, *, asha: bool, trials: int) -> Trace:
    return replay_search(config(algorithm, asha=asha, trials=trials), curve, metric=METRIC,
                         mode="max", trials=trials, rungs=RUNGS)  # fmt: skip


def test_asha_stops_trials_early_and_optuna_records_them_pruned_with_their_rungs() -> None:
    trace = replay("random", asha=True, trials=12)
    assert trace.study is not None
    stopped = [e for e in trace.ended if e.pruned]
    assert stopped and len(trace.ended) == 12
    assert all(e.rungs < RUNGS for e in stopped)
    states = [t.state for t in trace.study.trials]
    assert states.count(TrialState.PRUNED) == len(stopped)
    assert states.count(TrialState.COMPLETE) == 12 - len(stopped)
    for frozen in trace.study.trials:  # every rung a trial ran reached Optuna, at its step
        expected = curve(frozen.params).values
        assert list(frozen.intermediate_values) == list(
            range(1, len(frozen.intermediate_values) + 1)
        )
        assert frozen.intermediate_values == {k + 1: expected[k]
                                              for k in range(len(frozen.intermediate_values))}  # fmt: skip


def test_without_early_stopping_every_trial_runs_every_rung_and_compute_is_their_seconds() -> None:
    trace = replay("random", asha=False, trials=6)
    assert [e.rungs for e in trace.ended] == [RUNGS] * 6
    assert not any(e.pruned for e in trace.ended)
    assert trace.compute[-1] == pytest.approx(trace.total_compute)
    assert trace.total_compute == pytest.approx(sum(curve(e.params).seconds[-1]
                                                    for e in trace.ended))  # fmt: skip
    # while the first trial ended, the other slot's trial had run as long
    assert trace.compute[0] == pytest.approx(2 * trace.ended[0].seconds)
    assert trace.best == [max(e.value for e in trace.ended[: i + 1]) for i in range(6)]


def test_trace_answers_compute_to_reach_and_best_within() -> None:
    trace = replay("random", asha=False, trials=6)
    target = trace.best[-1]
    reached = trace.compute_to_reach(target)
    assert reached is not None and reached <= trace.compute[-1]
    assert trace.best_within(reached) == target
    assert trace.compute_to_reach(target + 1.0) is None
    assert trace.best_within(0.0) is None


def test_tpe_with_asha_finds_a_better_adapter_than_random_with_the_same_trials() -> None:
    """Over seeds, TPE's later trials concentrate near the peak: its median best beats random's
    with the same number of trials."""

    def best(algorithm: str, seed: int) -> float:
        c = config(algorithm, asha=True, trials=24)
        c = c.model_copy(update={"search": c.search.model_copy(update={"seed": seed})})
        return replay_search(c, curve, metric=METRIC, mode="max", trials=24, rungs=RUNGS).best[-1]

    seeds = range(5)
    tpe = sorted(best("tpe", s) for s in seeds)
    rand = sorted(best("random", s) for s in seeds)
    assert tpe[2] > rand[2]


@pytest.mark.parametrize("algorithm", ["tpe", "nsga2"])
def test_mo_asha_stops_only_dominated_trials_and_optuna_keeps_their_rung_values(
    algorithm: str,
) -> None:
    """Two objectives, field-F1 (max) and device-seconds (min), through the sweep's MO-ASHA
    (Ray's scheduler interface) and multi-objective study: a trial stopped at a rung was
    dominated there by a trial that reached the rung before it, and reaches Optuna as PRUNED
    with every rung it ran in ``rung_values``."""
    from sweeps.search.pareto import RUNG_VALUES, Goal, dominates

    seconds = Goal("cost/device_seconds", "min")
    trace = replay_search(config(algorithm, asha=True, trials=16), curve, metric=METRIC,
                          mode="max", trials=16, rungs=RUNGS, also=[seconds])  # fmt: skip
    assert trace.study is not None and len(trace.study.directions) == 2
    trials = trace.study.trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and len(pruned) == sum(e.pruned for e in trace.ended)
    for trial in trials:
        rungs = trial.user_attrs[RUNG_VALUES]
        expected = curve(trial.params)
        assert rungs == {str(k + 1): [expected.values[k], expected.seconds[k]]
                         for k in range(len(rungs))}  # fmt: skip
        if trial.state == TrialState.COMPLETE:
            assert len(rungs) == RUNGS and trial.values == [expected.values[-1],
                                                            expected.seconds[-1]]  # fmt: skip
    for trial in pruned:  # stopped at its last rung: another trial there dominated it
        stop = str(len(trial.user_attrs[RUNG_VALUES]))
        mine = (-trial.user_attrs[RUNG_VALUES][stop][0], trial.user_attrs[RUNG_VALUES][stop][1])
        points = [(-t.user_attrs[RUNG_VALUES][stop][0], t.user_attrs[RUNG_VALUES][stop][1])
                  for t in trials if t is not trial and stop in t.user_attrs[RUNG_VALUES]]  # fmt: skip
        assert any(dominates(p, mine) for p in points), trial.number
