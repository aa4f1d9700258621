"""What a driver killed at the wrong moment can leave in MLflow, and how the end of the resumed
sweep clears it (real MLflow, sqlite): each trial keeps exactly one child run."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeps._tracking import SweepTracker
from sweeps.recorder import forget_lost_trials
from sweeps.state import SweepState, TrialRecord


def test_lost_trials_and_orphan_runs_are_cleared(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "lost")
    parent = tracker.start_sweep("s", config={}, tags={}, artifacts={})
    state = SweepState(name="s", directory=str(tmp_path / "s"), config_path="",
                       objective_metric="heldout/loss", objective_mode="min", task_metric="none",
                       mlflow_uri=uri, experiment_id=tracker.experiment_id,
                       parent_run_id=parent)  # fmt: skip

    def child(trial_id: str) -> str:
        return tracker.start_trial(parent, sweep="s", trial_id=trial_id, params={})

    state.trials["done"] = TrialRecord("done", child("done"), {}, status="completed", last_step=8)
    state.trials["mid"] = TrialRecord("mid", child("mid"), {}, status="running", last_step=4)
    lost = TrialRecord("lost", child("lost"), {})  # created just before Ray's state was saved
    state.trials["lost"] = lost
    orphan = child("orphan")  # its record never reached state.json
    removed = forget_lost_trials(state, tracker)

    assert sorted(removed) == sorted(["lost", orphan]) and set(state.trials) == {"done", "mid"}
    active = MlflowClient(uri).search_runs([tracker.experiment_id])
    assert sorted(r.info.run_id for r in active) == sorted(
        [parent, state.trials["done"].run_id, state.trials["mid"].run_id])  # fmt: skip
    assert MlflowClient(uri).get_run(lost.run_id).info.lifecycle_stage == "deleted"
    assert forget_lost_trials(state, tracker) == []  # a second pass finds nothing
