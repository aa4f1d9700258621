"""The seam Optuna 5.1 broke: what Ray does to the sweep's searcher, for every
``search.algorithm``, single- and multi-objective.

Ray pickles the searcher into the Tuner's state (``tuner.pkl``, when the Tuner is made) and
saves it again at each experiment checkpoint; a driver killed mid-sweep is resumed from those
files alone (``Tuner.restore``). Optuna 5.1's NSGA-II sampler cannot be pickled (it holds a
thread lock), so here each sampler goes through exactly that: the Tuner made, trials suggested
and told, the state saved, everything in memory dropped as a SIGKILL drops it, the Tuner
restored from disk, and the sweep carried to its end. Real Ray Tune and Optuna (sqlite); no Ray
workers run (the searcher lives in the driver).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial

from evals.metric_keys import FINAL_RUNG, RUNG
from sweeps.config import config_from_dict
from sweeps.search.pareto import Goal
from sweeps.search.samplers import ALGORITHMS, resumed_seed
from sweeps.tracking.state import RAY_TRIAL_ID
from sweeps.tune.searcher import (
    PROGRESS_FORMAT,
    PruneAwareOptunaSearch,
    SweepSearchGenerator,
    build_searcher,
)

NUM_SAMPLES = 6
SESSION = "2026-12-06_00-00-00"
RANGES = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
          "lora_dropout": {"type": "uniform", "low": 0.0, "high": 0.2},
          "num_epochs": {"type": "int", "low": 1, "high": 3}}  # fmt: skip
GRID = {"learning_rate": [1e-4, 1e-3, 1e-2], "lora_r": [4, 8], "num_epochs": [1, 2]}
SCORE, COST = Goal("score", "max"), Goal("cost", "min")
CASES = [(algorithm, goals) for algorithm in sorted(ALGORITHMS)
         for goals in ((SCORE,), (SCORE, COST)) if not (algorithm == "cmaes" and len(goals) > 1)]  # fmt: skip


def trainable(config: dict[str, object]) -> None:
    """Never run: the Tuner needs a trainable to name."""


def make_tuner(algorithm: str, goals: tuple[Goal, ...], root: Path) -> tune.Tuner:
    """The Tuner as sweeps/tune/tuner.py makes it; making it pickles the searcher (tuner.pkl)."""
    space = GRID if algorithm == "grid" else RANGES
    config = config_from_dict({"data": {"train": "t.jsonl"}, "search_space": space,
                               "search": {"algorithm": algorithm, "num_samples": NUM_SAMPLES,
                                          "max_concurrent": 2, "seed": 5}}, source="s.yaml")  # fmt: skip
    searcher = build_searcher(config, goals=goals, storage_url=f"sqlite:///{root / 'optuna.db'}",
                              study_name="s", experiment=str(root / "tune"))  # fmt: skip
    return tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher,
                      num_samples=NUM_SAMPLES), run_config=tune.RunConfig(name="tune",
                      storage_path=str(root)))  # fmt: skip


def the_searcher(tuner: tune.Tuner) -> SweepSearchGenerator:
    """The search algorithm the Tuner holds (and, restored, unpickled from tuner.pkl)."""
    search = tuner._local_tuner._tune_config.search_alg  # type: ignore[union-attr]
    assert isinstance(search, SweepSearchGenerator)
    return search


def inner(search: SweepSearchGenerator) -> PruneAwareOptunaSearch:
    found = search.limiter.searcher
    assert isinstance(found, PruneAwareOptunaSearch)
    return found


def rung(goals: tuple[Goal, ...], params: dict[str, object], number: int, *,
         final: bool = False) -> dict[str, object]:  # fmt: skip
    """A rung's result: a score peaked at lr 1e-3, and a cost that grows with the epochs."""
    lr = float(params["learning_rate"])  # type: ignore[arg-type]
    score = -abs(lr - 1e-3) * 100 + number / 10
    values = {"score": score, "cost": float(params["num_epochs"]) * number}  # type: ignore[arg-type]
    return {**{g.metric: values[g.metric] for g in goals}, RUNG: float(number),
            FINAL_RUNG: float(final)}  # fmt: skip


def run_trial(search: PruneAwareOptunaSearch, goals: tuple[Goal, ...], trial_id: str, *,
              pruned: bool = False) -> dict[str, object]:  # fmt: skip
    params = search.suggest(trial_id)
    assert params is not None
    search.on_trial_result(trial_id, rung(goals, params, 1))
    search.on_trial_complete(trial_id, rung(goals, params, 2, final=not pruned))
    return params


def killed_and_resumed(algorithm: str, goals: tuple[Goal, ...], root: Path, *,
                       searcher_file_lost: bool = False) -> list[dict[str, object]]:  # fmt: skip
    """Two trials ended and a third mid-training when the driver is killed; the sweep resumed
    from disk and carried to its end. Returns every trial's hyperparameters, in order.
    ``searcher_file_lost``: the kill came before Ray's upload of the searcher's own file."""
    tuner = make_tuner(algorithm, goals, root)  # pickles the searcher: Optuna 5.1 raised here
    assert (root / "tune" / "tuner.pkl").is_file()
    search = the_searcher(tuner)
    before = [run_trial(inner(search), goals, "t0"), run_trial(inner(search), goals, "t1",
              pruned=True)]  # fmt: skip
    running = inner(search).suggest("t2")  # caught mid-training by the kill
    assert running is not None
    inner(search).on_trial_result("t2", rung(goals, running, 1))
    search.save_to_dir(str(root / "tune"), session_str=SESSION)  # Ray's save, and its trial list
    save_trial_list(root / "tune", {"t0": Trial.TERMINATED, "t1": Trial.TERMINATED,
                                    "t2": Trial.RUNNING})  # fmt: skip
    [saved] = (root / "tune").glob("searcher-state-*.pkl")
    body = json.loads(saved.read_text())  # plain data, not a pickle
    assert body["format"] == PROGRESS_FORMAT and body["ended"] == ["t0", "t1"]
    if searcher_file_lost:
        saved.unlink()
    del tuner, search  # SIGKILL: nothing in memory survives

    resumed = the_searcher(tune.Tuner.restore(str(root / "tune"), trainable=trainable))
    resumed.restore_from_dir(str(root / "tune"))  # as Ray's controller does on resume
    searcher = inner(resumed)
    searcher.on_trial_result("t2", rung(goals, running, 1))  # the restart replays its rung 1
    searcher.on_trial_complete("t2", rung(goals, running, 2, final=True))
    return [*before, running, *(run_trial(searcher, goals, f"t{i}") for i in range(3, NUM_SAMPLES))]


def save_trial_list(experiment: Path, statuses: dict[str, str]) -> None:
    """The trial list as Ray's controller saves it (experiment_state-<session>.json), with just
    what a restore reads of each trial."""
    data = [[json.dumps({"trial_id": trial_id, "status": status}), ""]
            for trial_id, status in statuses.items()]  # fmt: skip
    state = {"trial_data": data, "runner_data": {}}
    (experiment / f"experiment_state-{SESSION}.json").write_text(json.dumps(state))


def assert_each_trial_told_once(goals: tuple[Goal, ...], root: Path) -> None:
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{root / 'optuna.db'}").trials
    assert len(trials) == NUM_SAMPLES  # no study trial asked twice, none orphaned
    assert [t.user_attrs[RAY_TRIAL_ID] for t in trials] == [f"t{i}" for i in range(NUM_SAMPLES)]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED,
                                         *[TrialState.COMPLETE] * (NUM_SAMPLES - 2)]  # fmt: skip
    if len(goals) == 1:  # each rung told once, the replayed one too
        assert all(sorted(t.intermediate_values) == [1, 2] for t in trials if t.number != 1)
    else:
        assert all(len(t.values) == 2 for t in trials if t.state == TrialState.COMPLETE)
        assert sorted(trials[2].user_attrs["rung_values"]) == ["1", "2"]


@pytest.mark.parametrize(("algorithm", "goals"), CASES,
                         ids=[f"{a}-{len(g)}obj" for a, g in CASES])  # fmt: skip
def test_the_searcher_survives_rays_pickling_and_a_killed_driver(
    algorithm: str, goals: tuple[Goal, ...], tmp_path: Path
) -> None:
    params = killed_and_resumed(algorithm, goals, tmp_path)
    assert_each_trial_told_once(goals, tmp_path)
    points = [tuple(sorted(p.items())) for p in params]
    assert len(set(points)) == NUM_SAMPLES  # the rebuilt sampler did not replay earlier draws
    if algorithm in ("grid", "qmc"):  # the grid's order, the Sobol sequence: as if never killed
        designed = GRID if algorithm == "grid" else RANGES  # qmc draws the choice knobs at random
        again = uninterrupted(algorithm, goals, tmp_path / "uninterrupted")
        assert [{k: p[k] for k in designed} for p in params] == [
            {k: p[k] for k in designed} for p in again
        ]


def test_a_driver_killed_before_the_searchers_file_was_uploaded_resumes_from_the_study(
    tmp_path: Path,
) -> None:
    """Ray uploads the search state, the trial list and the searcher's file one by one in a
    background thread, so a kill can land between them. The study knows each trial's Ray id,
    rungs and end, which is all the searcher's file would have said."""
    killed_and_resumed("nsga2", (SCORE, COST), tmp_path, searcher_file_lost=True)
    assert_each_trial_told_once((SCORE, COST), tmp_path)


def uninterrupted(algorithm: str, goals: tuple[Goal, ...], root: Path) -> list[dict[str, object]]:
    """The points the same sweep suggests when no driver is killed."""
    root.mkdir()
    search = inner(the_searcher(make_tuner(algorithm, goals, root)))
    return [run_trial(search, goals, f"t{i}", pruned=i == 1) for i in range(NUM_SAMPLES)]


def test_a_rebuilt_sampler_is_seeded_from_the_seed_and_the_trials_the_study_holds() -> None:
    assert resumed_seed(5, 0) == 5  # nothing yet: the sweep's own seed
    assert resumed_seed(5, 3) == resumed_seed(5, 3) != resumed_seed(5, 4)
    assert len({resumed_seed(seed, 3) for seed in range(50)}) == 50
