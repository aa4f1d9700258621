"""What a driver killed at the wrong moment can leave in MLflow, and how a resume squares it
(real MLflow, sqlite): each trial keeps exactly one child run, and each rung is logged once."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeps.tracking.mlflow_facade import SweepTracker
from sweeps.tracking.recorder import SweepRecorder, catch_up_logged_steps, forget_lost_trials
from sweeps.tracking.state import SweepState, TrialRecord, load_state


def tracked_sweep(tmp_path: Path, experiment: str) -> tuple[SweepTracker, SweepState]:
    """A sweep's state and its parent run in a real MLflow sqlite store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, experiment)
    parent = tracker.start_sweep("s", config={}, tags={}, artifacts={})
    state = SweepState(name="s", directory=str(tmp_path / "s"), config_path="",
                       objective_metric="heldout/loss", objective_mode="min", task_metric="none",
                       mlflow_uri=uri, experiment_id=tracker.experiment_id,
                       parent_run_id=parent)  # fmt: skip
    return tracker, state


class NoDisplay:
    def refresh(self, state: SweepState, record: TrialRecord, what: str) -> None:
        pass


def test_a_rung_logged_just_before_the_kill_is_not_logged_again(tmp_path: Path) -> None:
    """The driver logged rung 2 to MLflow and was killed before saving state.json."""
    tracker, state = tracked_sweep(tmp_path, "behind")
    uri = state.mlflow_uri
    (tmp_path / "s").mkdir()
    recorder = SweepRecorder(state, tracker, NoDisplay())
    recorder.trial_started("t", {"learning_rate": 1e-3})
    recorder.trial_result("t", {"step": 4, "rung": 1, "heldout/loss": 2.0})
    saved = state.trials["t"].last_step
    tracker.log_metrics(state.trials["t"].run_id, {"rung": 2, "heldout/loss": 1.5}, step=8)
    assert state.trials["t"].last_step == saved == 4  # what the killed driver left in state.json

    assert catch_up_logged_steps(state, tracker) == ["t"]
    assert load_state("s", state_dir=tmp_path).trials["t"].last_step == 8  # read by the restart
    recorder.trial_result("t", {"step": 8, "rung": 2, "heldout/loss": 1.4})  # the replayed rung
    history = MlflowClient(uri).get_metric_history(state.trials["t"].run_id, "heldout/loss")
    assert sorted((m.step, m.value) for m in history) == [(4, 2.0), (8, 1.5)]
    assert catch_up_logged_steps(state, tracker) == []


def test_lost_trials_and_orphan_runs_are_cleared(tmp_path: Path) -> None:
    tracker, state = tracked_sweep(tmp_path, "lost")
    uri, parent = state.mlflow_uri, state.parent_run_id

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


def test_a_trial_ended_twice_logs_its_generations_once(tmp_path: Path) -> None:
    """The driver logged a trial's end to MLflow and was killed before saving state.json: the
    resumed driver ends it again (MLflow's log_table appends to a table already there)."""
    tracker, state = tracked_sweep(tmp_path, "twice")
    (tmp_path / "s").mkdir()
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "adapter").mkdir(parents=True)
    (checkpoint / "adapter" / "adapter_config.json").write_text("{}")
    rows = [
        {"prompt": f"p{i}", "reference": "r", "prediction": "x", "score": 0.5} for i in range(3)
    ]
    (checkpoint / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recorder = SweepRecorder(state, tracker, NoDisplay())
    recorder.trial_started("t", {})
    recorder.trial_result("t", {"step": 4, "rung": 1, "final_rung": 1, "heldout/loss": 2.0})
    recorder.trial_ended("t", result={"final_rung": 1}, checkpoint=checkpoint)
    state.trials["t"].status = "running"  # what the killed driver left in state.json
    recorder.trial_ended("t", result={"final_rung": 1}, checkpoint=checkpoint)

    client = MlflowClient(state.mlflow_uri)
    table = json.loads(Path(client.download_artifacts(state.trials["t"].run_id,
                                                      "sample_generations.json")).read_text())  # fmt: skip
    assert [row[table["columns"].index("prompt")] for row in table["data"]] == ["p0", "p1", "p2"]
    assert state.trials["t"].status == "completed"
    assert client.get_run(state.trials["t"].run_id).info.status == "FINISHED"


def test_the_sweep_summary_is_logged_once_per_count_of_ended_trials(tmp_path: Path) -> None:
    """Each driver that stops writes the summary; one killed after writing it, then resumed
    with no further trial ended, writes it again at the same step: MLflow keeps one point."""
    tracker, state = tracked_sweep(tmp_path, "summary")
    for ended, status in ((1, "KILLED"), (1, "KILLED"), (3, "FINISHED")):
        metrics = {"trials/completed": float(ended), "cost/device_hours": 0.1 * ended}
        tracker.end_sweep(state.parent_run_id, status=status, metrics=metrics,
                          tags={"status": status}, step=ended)  # fmt: skip
    history = MlflowClient(state.mlflow_uri).get_metric_history(
        state.parent_run_id, "trials/completed"
    )
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (3, 3.0)]
