"""The search generator's count of trials after a restore, with Ray's real classes, no workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps._tune import CountedSearchGenerator, restored_trial_count


def generator() -> CountedSearchGenerator:
    searcher = OptunaSearch(space={"x": tune.uniform(0, 1)}, metric="m", mode="max")
    return CountedSearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=1))


def saved(directory: Path, *, counted: int, held: int) -> Path:
    """A driver's saves cut between two files: the generator counted ``counted`` trials, the
    experiment state (saved before it) holds ``held``."""
    before = generator()
    before._counter, before._total_samples = counted, 4
    before.save_to_dir(str(directory), session_str="s")
    state = {"trial_data": [{"trial": n} for n in range(held)], "runner_data": {}}
    (directory / "experiment_state-s.json").write_text(json.dumps(state))
    return directory


@pytest.mark.parametrize(("counted", "held", "restored"), [(4, 3, 3), (4, 4, 4), (2, 3, 2)])
def test_a_restored_count_never_exceeds_the_trials_the_experiment_holds(
    tmp_path: Path, counted: int, held: int, restored: int
) -> None:
    after = generator()
    after.restore_from_dir(str(saved(tmp_path, counted=counted, held=held)))
    assert after._counter == restored and after._total_samples == 4
    assert after.is_finished() == (restored >= 4)  # one short: it asks for the lost trial again


def test_an_unreadable_experiment_state_leaves_the_count_as_saved(tmp_path: Path) -> None:
    directory = saved(tmp_path, counted=4, held=3)
    (directory / "experiment_state-s.json").write_text("{cut sho")
    assert restored_trial_count(directory) is None
    after = generator()
    after.restore_from_dir(str(directory))
    assert after._counter == 4
