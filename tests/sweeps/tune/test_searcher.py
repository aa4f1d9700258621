"""The searcher against a real Optuna study (sqlite), called as Ray calls it, with no Ray workers.

What a trial tells the study (PRUNED with every rung, COMPLETE, FAIL), exactly once through
replays and a restore from older saved state; an orphaned study trial reused after a driver
crash; and Ray's real SearchGenerator restored from state files of different saves (a driver
killed between the upload of its trial list and of the search's state).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Experiment, Trial
from ray.tune.search import ConcurrencyLimiter

from evals.metric_keys import FINAL_RUNG, RUNG
from sweeps.tune.searcher import PruneAwareOptunaSearch, SweepSearchGenerator

METRIC = "score"


def space(trial: optuna.Trial) -> dict[str, float]:
    return {"x": trial.suggest_float("x", 0.0, 1.0)}


def trainable(config: dict[str, object]) -> None:
    """Never run: Ray's Experiment needs a trainable to name."""


def searcher(url: str) -> PruneAwareOptunaSearch:
    return PruneAwareOptunaSearch(space=space, metric=METRIC, mode="max",
                                  sampler=optuna.samplers.RandomSampler(seed=0),
                                  storage=optuna.storages.RDBStorage(url), study_name="s")  # fmt: skip


def rung(number: int, value: float, *, final: bool = False) -> dict[str, object]:
    return {METRIC: value, RUNG: float(number), FINAL_RUNG: float(final)}


def study_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="s", storage=url).trials


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Optuna's tables, made once (making them takes most of a second)."""
    path = tmp_path_factory.mktemp("study") / "empty.db"
    optuna.storages.RDBStorage(f"sqlite:///{path}")
    return path


@pytest.fixture
def url(empty_database: Path, tmp_path: Path) -> str:
    shutil.copy(empty_database, tmp_path / "optuna.db")
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def test_a_trial_stopped_before_its_final_rung_is_pruned_with_every_rung(url: str) -> None:
    search = searcher(url)
    search.suggest("a")
    search.on_trial_result("a", rung(1, 0.2))
    search.on_trial_result("a", rung(2, 0.3))
    search.on_trial_complete("a", rung(3, 0.4))  # ASHA stopped it here: Ray passes it only here
    [trial] = study_trials(url)
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.2, 2: 0.3, 3: 0.4}


def test_a_trial_that_reached_its_final_rung_is_complete_with_its_value(url: str) -> None:
    search = searcher(url)
    search.suggest("a")
    search.on_trial_result("a", rung(1, 0.2))
    search.on_trial_complete("a", rung(2, 0.7, final=True))
    [trial] = study_trials(url)
    assert (trial.state, trial.value) == (TrialState.COMPLETE, 0.7)
    assert trial.intermediate_values == {1: 0.2, 2: 0.7}


def test_an_errored_trial_fails(url: str) -> None:
    search = searcher(url)
    search.suggest("a")
    search.on_trial_result("a", rung(1, 0.2))
    search.on_trial_complete("a", error=True)
    [trial] = study_trials(url)
    assert (trial.state, trial.intermediate_values) == (TrialState.FAIL, {1: 0.2})


def test_replayed_rungs_and_a_repeated_end_are_told_once(url: str) -> None:
    search = searcher(url)
    search.suggest("a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a step is reported twice
        for number in (1, 2, 1, 2, 3):  # a restart from the rung-1 checkpoint replays rung 2
            search.on_trial_result("a", rung(number, number / 10))
        search.on_trial_complete("a", rung(3, 0.3))
    search.on_trial_complete("a", rung(4, 0.9, final=True))  # Ray again: nothing changes
    [trial] = study_trials(url)
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}


def test_a_searcher_restored_from_older_state_tells_nothing_again(url: str, tmp_path: Path) -> None:
    """A driver killed after the study was told, before Ray saved the searcher: the resumed
    searcher (older state, same study) sees the trial's rungs and end again."""
    before = searcher(url)
    before.suggest("a")
    before.on_trial_result("a", rung(1, 0.1))
    before.save(str(tmp_path / "older.pkl"))
    before.on_trial_result("a", rung(2, 0.2))
    before.on_trial_complete("a", rung(3, 0.3))
    told = study_trials(url)

    after = searcher(url)
    after.restore(str(tmp_path / "older.pkl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for number in (1, 2, 3, 4):  # a restart trains on past the rung the trial ended at
            after.on_trial_result("a", rung(number, number / 10))
    after.on_trial_complete("a", rung(4, 0.4, final=True))
    assert study_trials(url) == told
    assert told[0].state == TrialState.PRUNED


def test_a_study_trial_orphaned_by_a_driver_crash_is_reused_by_the_next_suggestion(
    url: str, tmp_path: Path
) -> None:
    before = searcher(url)
    first = before.suggest("a")
    before.save(str(tmp_path / "saved.pkl"))
    orphaned = before.suggest("b")  # asked (RUNNING), then the driver is killed: Ray lost "b"
    after = searcher(url)
    after.restore(str(tmp_path / "saved.pkl"))
    assert after.suggest("c") == orphaned != first
    trials = study_trials(url)
    assert len(trials) == 2 and [t.user_attrs["ray_trial_id"] for t in trials] == ["a", "c"]
    after.on_trial_complete("c", rung(1, 0.5, final=True))
    after.on_trial_complete("a", error=True)
    assert [t.state for t in study_trials(url)] == [TrialState.FAIL, TrialState.COMPLETE]


# --------------------------------------------------------------- Ray's SearchGenerator on restore
NUM_SAMPLES = 4


def generator(url: str, experiment: Path) -> SweepSearchGenerator:
    """As Ray unpickles it from tuner.pkl: built, never given the experiment's configuration."""
    limiter = ConcurrencyLimiter(searcher(url), max_concurrent=2)
    return SweepSearchGenerator(limiter, experiment=str(experiment))


def started(url: str, experiment: Path) -> SweepSearchGenerator:
    made = generator(url, experiment)
    made.add_configurations([Experiment("tune", run=trainable, num_samples=NUM_SAMPLES,
                                        storage_path=str(experiment.parent))])  # fmt: skip
    return made


def next_trial(search: SweepSearchGenerator) -> Trial:
    trial: Trial | None = search.next_trial()
    assert trial is not None
    trial.set_status(Trial.RUNNING)
    return trial


def end(search: SweepSearchGenerator, trial: Trial) -> None:
    search.on_trial_complete(trial.trial_id, rung(1, 0.5, final=True))
    trial.set_status(Trial.TERMINATED)


def save_trials(experiment: Path, trials: list[Trial], session: str) -> None:
    """The trial list as Ray's TuneController saves it (experiment_state-<session>.json)."""
    state = {"trial_data": [list(t.get_json_state()) for t in trials], "runner_data": {}}
    (experiment / f"experiment_state-{session}.json").write_text(json.dumps(state))


def three_made(url: str, experiment: Path) -> tuple[SweepSearchGenerator, list[Trial]]:
    """A sweep of 4 trials, 2 at a time: two ended, the third running. An earlier driver
    session's state (fewer trials) was written last, as a download to staging writes it."""
    experiment.mkdir(parents=True)
    search = started(url, experiment)
    trials = [next_trial(search), next_trial(search)]
    end(search, trials[0])
    end(search, trials[1])
    trials.append(next_trial(search))
    save_trials(experiment, trials[:1], "2026-01-01_00-00-00")
    os.utime(experiment / "experiment_state-2026-01-01_00-00-00.json", (2e9, 2e9))
    return search, trials


def test_a_trial_lost_between_the_saves_is_made_again_after_a_restore(
    url: str, tmp_path: Path
) -> None:
    """The trial list saved with 3 trials, the search's state after the 4th was made."""
    experiment = tmp_path / "ray" / "tune"
    search, trials = three_made(url, experiment)
    save_trials(experiment, trials, "2026-01-02_00-00-00")
    lost = next_trial(search)
    search.save_to_dir(str(experiment), session_str="2026-01-02_00-00-00")

    resumed = generator(url, experiment)
    assert resumed.has_checkpoint(str(experiment))
    resumed.restore_from_dir(str(experiment))
    assert not resumed.is_finished()  # 3 trials held: one more to make
    again = resumed.next_trial()
    assert again is not None and again.config == lost.config  # the lost trial's study trial
    assert resumed.is_finished() and resumed.next_trial() is None
    for trial in (trials[2], again):
        resumed.on_trial_complete(trial.trial_id, rung(1, 0.5, final=True))
    states = [t.state for t in study_trials(url)]
    assert states == [TrialState.COMPLETE] * NUM_SAMPLES


def test_a_trial_the_saved_search_state_lacks_is_told_after_a_restore(
    url: str, tmp_path: Path
) -> None:
    """The search's state saved before the 4th trial was made, the trial list after."""
    experiment = tmp_path / "ray" / "tune"
    search, trials = three_made(url, experiment)
    search.save_to_dir(str(experiment), session_str="2026-01-02_00-00-00")
    trials.append(next_trial(search))
    save_trials(experiment, trials, "2026-01-02_00-00-00")

    resumed = generator(url, experiment)
    resumed.restore_from_dir(str(experiment))
    assert resumed.is_finished() and resumed.next_trial() is None  # no fifth trial
    for trial in trials[2:]:  # both still running: Ray runs them again, and they end
        resumed.on_trial_result(trial.trial_id, rung(1, 0.4))
        resumed.on_trial_complete(trial.trial_id, rung(2, 0.5, final=True))
    told = study_trials(url)
    assert [t.state for t in told] == [TrialState.COMPLETE] * NUM_SAMPLES
    assert told[-1].intermediate_values == {1: 0.4, 2: 0.5}
