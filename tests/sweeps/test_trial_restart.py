"""Trials whose workers are SIGKILLed mid-run: resumed from the last checkpoint (not from zero)
under Ray, or, past the retry budget, ended as failed with the reason, while the sweep goes on."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from sweeps.state import SweepState
from tests.conftest import slice_embedded_data, tiny_sweep_config


def kill_worker_after_rungs(
    ray_dir: Path, *, rungs: list[int], stop: threading.Event, killed: list[dict[str, Any]]
) -> None:
    """Poll Ray's result log; SIGKILL the trial's worker each time it reaches the next rung."""
    pending = list(rungs)
    while pending and not stop.is_set():
        for path in ray_dir.glob("*/*/result.json"):
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            fresh = rows and all(int(rows[-1]["trial/pid"]) != int(k["trial/pid"]) for k in killed)
            if fresh and rows[-1]["rung"] >= pending[0]:
                os.kill(int(rows[-1]["trial/pid"]), signal.SIGKILL)
                killed.append(rows[-1])
                pending.pop(0)
        time.sleep(0.05)


def run_with_kills(
    config: dict[str, Any], name: str, tmp_path: Path, rungs: list[int]
) -> tuple[SweepState, list[dict[str, Any]]]:
    stop, killed = threading.Event(), []
    watcher = threading.Thread(
        target=kill_worker_after_rungs,
        args=(tmp_path / "sweeps" / name / "ray",),
        kwargs={"rungs": rungs, "stop": stop, "killed": killed},
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


def test_killed_trial_resumes_from_its_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    config = long_trial_config(tiny_model, tmp_path)
    ray_copies = set(Path(tempfile.gettempdir()).glob("checkpoint_tmp_*"))
    state, killed = run_with_kills(config, "restart", tmp_path, rungs=[2])
    assert killed, "the watcher never saw rung 2"
    # Ray's temporary copy of the checkpoint the trial resumed from is removed afterwards
    assert set(Path(tempfile.gettempdir()).glob("checkpoint_tmp_*")) <= ray_copies
    [record] = state.trials.values()
    assert record.status == "completed" and record.rungs == 12

    [result_file] = (state.path / "ray" / "tune").glob("*/result.json")
    results = [json.loads(x) for x in result_file.read_text().splitlines()]
    pids = list(dict.fromkeys(int(r["trial/pid"]) for r in results))
    assert len(pids) == 2, "the trial should have run in a second worker after the kill"
    first_after = next(r for r in results if int(r["trial/pid"]) == pids[1])
    before = [r for r in results if int(r["trial/pid"]) == pids[0]]
    assert first_after["step"] > before[0]["step"]  # continued from a checkpoint, not from step 0
    assert first_after["tokens_trained"] > before[0]["tokens_trained"]

    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    steps = [m.step for m in client.get_metric_history(record.run_id, "heldout/loss")]
    assert steps == sorted(set(steps)) and len(steps) == 12  # every rung once, none twice


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
