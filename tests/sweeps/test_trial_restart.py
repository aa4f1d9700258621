"""A trial whose worker is SIGKILLed mid-run resumes from its last checkpoint under Ray, not from zero."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from tests.conftest import DATA, tiny_sweep_config, write_jsonl


def kill_worker_after_rung(
    ray_dir: Path, *, rung: int, stop: threading.Event, killed: list[dict]
) -> None:
    """Poll Ray's result log; SIGKILL the trial's worker once it has reported ``rung``."""
    while not stop.is_set():
        for path in ray_dir.glob("*/*/result.json"):
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            if rows and rows[-1]["rung"] >= rung:
                os.kill(int(rows[-1]["trial/pid"]), signal.SIGKILL)
                killed.append(rows[-1])
                return
        time.sleep(0.05)


def test_killed_trial_resumes_from_its_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()[:4]]
    data = {
        "train": write_jsonl(tmp_path / "t.jsonl", rows),
        "heldout": write_jsonl(tmp_path / "h.jsonl", held),
    }
    config = tiny_sweep_config(
        tiny_model,
        data,
        tmp_path,
        scheduler={"type": "none"},
        search={"num_samples": 1, "max_concurrent": 1},
        search_space={"num_epochs": 6, "learning_rate": 3e-3, "lora_r": 4},
        objective={"metric": "heldout/loss"},
    )
    stop, killed = threading.Event(), []
    watcher = threading.Thread(
        target=kill_worker_after_rung,
        args=(tmp_path / "sweeps" / "restart" / "ray",),
        kwargs={"rung": 2, "stop": stop, "killed": killed},
        daemon=True,
    )
    watcher.start()
    try:
        state = launch_sweep(config, name="restart")
    finally:
        stop.set()
    assert killed, "the watcher never saw rung 2"
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
