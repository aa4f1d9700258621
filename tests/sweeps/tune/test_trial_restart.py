"""Trials whose workers are SIGKILLed mid-run: resumed from the last intact checkpoint (not from
zero) under Ray, or, past the retry budget, ended as failed with the reason, while the sweep goes
on. A latest checkpoint damaged before the kill is passed over for the one before it."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeps import launch_sweep
from sweeps.cli.main import main
from sweeps.cli.verbs_sweep import describe_restarts
from sweeps.tracking.state import SweepState, load_state, restores
from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import result_rows


def truncate_latest_checkpoint(trial_dir: Path) -> str:
    """Cut the newest checkpoint's adapter weights in half (a disk that filled up mid-write)."""
    latest = max(trial_dir.glob("checkpoint_*"))
    weights = latest / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return latest.name


def kill_worker_after_rungs(
    ray_dir: Path, *, rungs: list[int], stop: threading.Event, killed: list[dict[str, Any]],
    damage_at: set[int] = frozenset(),  # type: ignore[assignment]
) -> None:  # fmt: skip
    """Poll Ray's result log; SIGKILL the trial's worker each time it reaches the next rung
    (first damaging its newest checkpoint when that rung is in ``damage_at``)."""
    pending = list(rungs)
    while pending and not stop.is_set():
        for path in ray_dir.glob("*/*/result.json"):
            rows = result_rows(path)
            fresh = rows and all(int(rows[-1]["trial/pid"]) != int(k["trial/pid"]) for k in killed)
            if fresh and rows[-1]["rung"] >= pending[0]:
                damaged = (
                    truncate_latest_checkpoint(path.parent) if pending[0] in damage_at else None
                )
                os.kill(int(rows[-1]["trial/pid"]), signal.SIGKILL)
                killed.append({**rows[-1], "damaged": damaged})
                pending.pop(0)
        time.sleep(0.05)


def storage_of(config: dict[str, Any], sweep: Path) -> Path:
    """Where Ray writes the sweep's trials: tracking.checkpoint_storage/<sweep>, or <sweep>/ray."""
    shared = config["tracking"].get("checkpoint_storage")
    return Path(shared.removeprefix("file://")) / sweep.name if shared else sweep / "ray"


def run_with_kills(
    config: dict[str, Any], name: str, tmp_path: Path, rungs: list[int],
    damage_at: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[SweepState, list[dict[str, Any]]]:  # fmt: skip
    stop, killed = threading.Event(), []
    watcher = threading.Thread(
        target=kill_worker_after_rungs,
        args=(storage_of(config, tmp_path / "sweeps" / name),),
        kwargs={"rungs": rungs, "stop": stop, "killed": killed, "damage_at": damage_at},
        daemon=True,
    )
    watcher.start()
    try:
        state = launch_sweep(config, name=name)
    finally:
        stop.set()
    return state, killed


def long_trial_config(tiny_model: Path, tmp_path: Path) -> dict[str, Any]:
    """One trial of 12 rungs (6 epochs x 2): long enough to be killed in the middle."""
    data = slice_embedded_data(tmp_path, train=None, heldout=4)
    return tiny_sweep_config(
        tiny_model, data, tmp_path, scheduler={"type": "none"},
        search={"num_samples": 1, "max_concurrent": 1},
        search_space={"num_epochs": 6, "learning_rate": 3e-3, "lora_r": 4},
        objective={"metric": "heldout/loss"},
    )  # fmt: skip


def test_killed_trial_resumes_from_its_newest_intact_checkpoint(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Killed at rung 2: resumes from rung 2's checkpoint. Killed at rung 5 after rung 5's
    checkpoint was truncated: passes over it and resumes from rung 4's (Ray keeps two)."""
    config = long_trial_config(tiny_model, tmp_path)
    config["recovery"] = {"max_retries": 2}
    # checkpoints in storage addressed by URI, as a cluster's shared or cloud storage would be
    config["tracking"]["checkpoint_storage"] = f"file://{tmp_path / 'store'}"
    ray_copies = set(Path(tempfile.gettempdir()).glob("checkpoint_tmp_*"))
    state, killed = run_with_kills(config, "restart", tmp_path, rungs=[2, 5], damage_at={5})
    assert [k["rung"] for k in killed] == [2, 5], "the watcher missed a rung"
    # Ray's temporary copies of the checkpoints the trial resumed from are removed afterwards
    assert set(Path(tempfile.gettempdir()).glob("checkpoint_tmp_*")) <= ray_copies
    assert not (state.path / "work").exists()  # nor in the sweep, once it completed
    [record] = state.trials.values()
    assert record.status == "completed" and record.rungs == 12

    assert not (state.path / "ray").exists()
    [result_file] = (tmp_path / "store" / "restart" / "tune").glob("*/result.json")
    results = [json.loads(x) for x in result_file.read_text().splitlines()]
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for row in results:
        by_pid.setdefault(int(row["trial/pid"]), []).append(row)
    assert [[r["rung"] for r in rows][:1] for rows in by_pid.values()] == [[1], [3], [5]]
    # rung 5 is trained again, from rung 4's checkpoint: not from step 0, and not from the
    # truncated one
    assert by_pid[int(killed[1]["trial/pid"])][-1]["rung"] == 5

    first, second = restores(state.path)
    assert (first["checkpoint"], first["skipped"]) == ("checkpoint_000001", [])
    assert second["checkpoint"] == "checkpoint_000003"
    [skipped] = second["skipped"]
    assert skipped["checkpoint"] == killed[1]["damaged"] == "checkpoint_000004"
    assert "adapter/adapter_model.safetensors has" in skipped["problem"]
    assert (first["step"], second["step"]) == (killed[0]["step"], results[3]["step"])

    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    steps = [m.step for m in client.get_metric_history(record.run_id, "heldout/loss")]
    assert steps == sorted(set(steps)) and len(steps) == 12  # every rung once, none twice
    tags = client.get_run(record.run_id).data.tags
    assert tags["restarts"] == "2" and "checkpoint_000004" in tags["restarts.damaged_checkpoints"]
    assert "1 passed over a damaged checkpoint" in describe_restarts(state.path)


def test_a_trial_killed_past_its_retries_fails_with_a_reason(
    tiny_model: Path, tmp_path: Path
) -> None:
    config = long_trial_config(tiny_model, tmp_path)
    state, killed = run_with_kills(config, "doomed", tmp_path, rungs=[2, 4])
    assert len(killed) == 2
    [record] = state.trials.values()
    assert record.status == "failed" and record.error
    assert state.status == "completed"  # the sweep itself ends normally
    run = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"]).get_run(record.run_id)
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"
    assert run.data.tags["failure_reason"] == record.error


def test_rerun_failed_runs_only_the_failed_trial_again_in_the_same_sweep_and_study(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trial killed past its retries fails; ``sweep rerun --failed`` runs it again from
    scratch under its own Ray trial id, with a new study trial of the same hyperparameters and a
    new MLflow run; the completed trial is not touched, and the failed attempt stays on record."""
    config = long_trial_config(tiny_model, tmp_path)
    config["search"] = {"algorithm": "grid", "num_samples": 2, "max_concurrent": 1, "seed": 3}
    config["search_space"] = {"num_epochs": 3, "learning_rate": [3e-3, 1e-3], "lora_r": 4}
    state, killed = run_with_kills(config, "pair", tmp_path, rungs=[2, 4])
    assert len(killed) == 2 and state.status == "completed"
    [failed] = [t for t in state.trials.values() if t.status == "failed"]
    [done] = [t for t in state.trials.values() if t.status == "completed"]
    storage = f"sqlite:///{state.path / 'optuna.db'}"
    before = {t.number: t for t in optuna.load_study(study_name="pair", storage=storage).trials}

    state_dir = str(tmp_path / "sweeps")
    assert main(["rerun", "pair", "--state-dir", state_dir]) == 2  # what to re-run, unsaid
    assert "say what to re-run: --failed" in capsys.readouterr().err
    assert main(["rerun", "pair", "--failed", "--state-dir", state_dir]) == 0
    out = capsys.readouterr().out
    assert f"re-running {failed.trial_id} (" in out

    after = load_state("pair", state_dir=Path(state_dir))
    again, kept = after.trials[failed.trial_id], after.trials[done.trial_id]
    assert again.status == "completed" and again.rungs == 6 and again.run_id != failed.run_id
    assert kept == done  # untouched: same run, same metrics
    assert after.reruns == {failed.trial_id: [failed.run_id]} and after.status == "completed"
    assert not (after.path / "faults").exists() or not any((after.path / "faults").iterdir())

    trials = optuna.load_study(study_name="pair", storage=storage).trials
    assert len(trials) == len(before) + 1
    for number, trial in before.items():  # the earlier trials as they ended, FAIL included
        assert (trials[number].state, trials[number].values) == (trial.state, trial.values)
    new = trials[-1]
    old = next(t for t in before.values() if t.state == TrialState.FAIL)
    assert new.state == TrialState.COMPLETE and new.params == old.params
    assert new.user_attrs == {"ray_trial_id": failed.trial_id, "rerun_of": old.number}

    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    old_run, new_run = client.get_run(failed.run_id), client.get_run(again.run_id)
    assert old_run.info.status == "FAILED" and old_run.data.tags["rerun"] == "replaced"
    assert new_run.info.status == "FINISHED" and new_run.data.tags["status"] == "completed"
    steps = [m.step for m in client.get_metric_history(again.run_id, "heldout/loss")]
    assert steps == sorted(set(steps)) and len(steps) == 6  # every rung once
    children = client.search_runs([after.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{after.parent_run_id}'"))  # fmt: skip
    assert {r.info.run_id for r in children} == {failed.run_id, again.run_id, done.run_id}

    assert main(["rerun", "pair", "--failed", "--state-dir", state_dir]) == 0
    assert "has no failed trial: nothing to re-run" in capsys.readouterr().out
