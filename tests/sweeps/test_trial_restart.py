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

from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from sweeps.cli import describe_restarts
from sweeps.state import SweepState, restores
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
