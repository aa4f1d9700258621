"""``sweep rerun --failed``'s study side (sweeps/driver/rerun.py), on a real sqlite study; the whole
re-run, through Ray and MLflow, is in test_trial_restart.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeps.config import ConfigError
from sweeps.driver.rerun import RERUN_OF, check_rerunnable, failed_trials, requeue
from sweeps.tracking.state import RAY_TRIAL_ID, SweepState, TrialRecord

SPACE = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
         "lora_r": optuna.distributions.CategoricalDistribution([4, 16])}  # fmt: skip


def swept(tmp_path: Path, *, tag: bool) -> tuple[SweepState, str]:
    """A sweep of two trials, one failed, and its study (the failed trial tagged or not)."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for trial_id, fails in (("t0", False), ("t1", True)):
        trial = study.ask(SPACE)
        if tag or not fails:
            trial.set_user_attr(RAY_TRIAL_ID, trial_id)
        if fails:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, 0.5)
    state = SweepState(name="s", directory=str(tmp_path), config_path="", mlflow_uri="",
                       objective_metric="heldout/loss", objective_mode="min",
                       task_metric="field_f1")  # fmt: skip
    state.trials = {"t0": TrialRecord("t0", "r0", {}, "completed"),
                    "t1": TrialRecord("t1", "r1", {}, "failed", error="killed")}  # fmt: skip
    return state, storage


def test_a_failed_trial_is_requeued_with_its_hyperparameters_and_its_ray_trial(
    tmp_path: Path,
) -> None:
    state, storage = swept(tmp_path, tag=True)
    assert [t.trial_id for t in failed_trials(state)] == ["t1"]
    check_rerunnable(state, storage=storage, trials=failed_trials(state))
    study = optuna.load_study(study_name="s", storage=storage)
    number = requeue(study, "t1")
    trials = optuna.load_study(study_name="s", storage=storage).trials
    old, new = trials[1], trials[number]
    assert number == 2 and new.state == TrialState.RUNNING and old.state == TrialState.FAIL
    assert new.params == old.params and new.distributions == old.distributions
    assert new.user_attrs == {RAY_TRIAL_ID: "t1", RERUN_OF: 1}


def test_a_failed_trial_without_its_study_trial_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    state, storage = swept(tmp_path, tag=False)
    with pytest.raises(ConfigError, match=r"^sweep s: trial t1 has no study trial tagged with its "
                       r"Ray trial id .*search.warm_start: s\)$"):  # fmt: skip
        check_rerunnable(state, storage=storage, trials=failed_trials(state))
    with pytest.raises(LookupError, match="no trial of Ray trial t1"):
        requeue(optuna.load_study(study_name="s", storage=storage), "t1")
