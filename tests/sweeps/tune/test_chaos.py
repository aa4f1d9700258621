"""Eight trials at once, their workers SIGKILLed at random moments: one sweep for both.

Each chaos sweep runs 8 trials of 6 rungs at once (a quarter CPU each), through the one recorder.
A watcher waits a random time, picks a random running trial that has reported under its current
worker (so it has a checkpoint), and SIGKILLs that worker wherever it is: in a training step, an
evaluation, writing or persisting a checkpoint. Every sweep must complete, every killed trial must
restart from a checkpoint at or after its last report, and every child run's metric history must
hold each rung once, none missing: for a trial never killed, exactly the points Ray received.
With keep_checkpoints 1 by objective, each trial keeps its best checkpoint and its latest (which
restarts need), and nothing else. ``--chaos-sweeps N`` sets the number of sweeps (a long run: 30),
``--chaos-seed`` replays one.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweeps.tracking.recorder import logged_metrics
from sweeps.tracking.state import SweepState, restores
from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import launch_counting_concurrency, ray_results, result_rows
from trainers.checkpoint import checkpoint_step

KILLS_PER_SWEEP = 4
TRIALS = 8
RUNGS = 6


def kill_random_workers(
    ray_dir: Path, *, rng: random.Random, kills: int, stop: threading.Event,
    killed: list[dict[str, Any]],
) -> None:  # fmt: skip
    """At random moments, SIGKILL the worker of a random trial that has reported under it."""
    while len(killed) < kills and not stop.is_set():
        time.sleep(rng.uniform(0.05, 1.0))
        latest = {}
        for path in sorted(ray_dir.glob("*/*/result.json")):
            rows = result_rows(path)
            if rows and not rows[-1]["final_rung"]:
                latest[rows[-1]["trial_id"]] = rows[-1]
        dead = {int(k["trial/pid"]) for k in killed}
        alive = [row for _, row in sorted(latest.items()) if int(row["trial/pid"]) not in dead]
        if not alive:
            continue
        row = rng.choice(alive)
        try:
            os.kill(int(row["trial/pid"]), signal.SIGKILL)
        except ProcessLookupError:  # it ended (or was restarted) in the meantime
            continue
        killed.append(row)


def chaos_sweep(tiny_model: Path, tmp: Path, *, rng: random.Random) -> tuple[
    SweepState, int, list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Eight trials at once while a watcher kills workers; returns the state, the most trials
    the driver showed running at once, the kills and the config."""
    data = slice_embedded_data(tmp, train=16, heldout=4)
    config = tiny_sweep_config(
        tiny_model, data, tmp, scheduler={"type": "none"},
        search={"algorithm": "random", "num_samples": TRIALS, "max_concurrent": TRIALS,
                "seed": rng.randrange(1000)},
        search_space={"num_epochs": 3, "lora_r": [2, 4], "sequence_len": [128],
                      "learning_rate": {"type": "loguniform", "low": 1e-3, "high": 3e-2}},
        training={"micro_batch_size": 4, "evals_per_epoch": 2},
        resources={"cpu": 2 / TRIALS}, objective={"metric": "heldout/loss"},
        recovery={"max_retries": KILLS_PER_SWEEP, "keep_checkpoints": 1,
                  "keep_best_by": "objective"},
        evaluation={"max_new_tokens": 4, "batch_size": 4, "logged_generations": 1},
    )  # fmt: skip
    stop, killed = threading.Event(), []
    watcher = threading.Thread(
        target=kill_random_workers, args=(tmp / "sweeps" / "chaos" / "ray",),
        kwargs={"rng": rng, "kills": KILLS_PER_SWEEP, "stop": stop, "killed": killed},
        daemon=True,
    )  # fmt: skip
    watcher.start()
    try:
        state, most = launch_counting_concurrency(config, name="chaos", num_cpus=2)
    finally:
        stop.set()
        watcher.join(timeout=10)
    return state, most, killed, config


def check_restarts(state: SweepState, killed: list[dict[str, Any]], replay: str) -> None:
    """Each kill has a restart of its trial, from a checkpoint at or after its last report (the
    worker writes a checkpoint whole before reporting it, even if Ray had not registered it yet).
    Only a newer checkpoint the kill cut short may have been passed over."""
    for trial_id in {k["trial_id"] for k in killed}:
        kills = [k for k in killed if k["trial_id"] == trial_id]
        starts = [r for r in restores(state.path) if r["trial_id"] == trial_id]
        assert len(starts) == len(kills), (trial_id, kills, starts, replay)
        for kill, start in zip(kills, starts, strict=True):
            assert start["step"] >= kill["step"], (kill, start, replay)
            assert all(s["checkpoint"] > start["checkpoint"] for s in start["skipped"]), replay


def check_histories(
    state: SweepState, results: dict[str, list[dict[str, Any]]], uri: str, *, killed: set[str],
    replay: str,
) -> None:  # fmt: skip
    """Every rung of every trial in MLflow once: the steps Ray saw, no gap, no duplicate; for a
    trial never killed, exactly the values Ray received (a restart may report a rung again)."""
    client = MlflowClient(tracking_uri=uri)
    for trial_id, record in state.trials.items():
        rows = results[trial_id]
        steps = sorted({int(r["step"]) for r in rows})
        assert len(steps) == RUNGS, (trial_id, steps, replay)
        for key in logged_metrics(rows[-1]):
            history = client.get_metric_history(record.run_id, key)
            assert sorted(m.step for m in history) == steps, (trial_id, key, history, replay)
            if trial_id not in killed:
                sent = [(int(r["step"]), pytest.approx(float(r[key]))) for r in rows]
                assert sorted((m.step, m.value) for m in history) == sent, (trial_id, key)


def check_kept_checkpoints(
    state: SweepState, results: dict[str, list[dict[str, Any]]], *, killed: set[str], replay: str
) -> None:
    """keep_checkpoints 1 by objective: the best checkpoint and the latest, nothing else. A killed
    trial keeps at most two, and its newest holds the last rung. Its names cannot be predicted: a
    restart from a checkpoint Ray had not yet registered numbers the next rung's checkpoint as
    Ray's count says, which may be the very name it restarted from."""
    last = f"checkpoint_{RUNGS - 1:06d}"
    for trial_id in state.trials:
        trial_dir = next((state.path / "ray" / "tune").glob(f"*{trial_id}*"))
        kept = {p.name for p in trial_dir.glob("checkpoint_*")}
        if trial_id in killed:
            final = max(int(r["step"]) for r in results[trial_id])
            newest = checkpoint_step(trial_dir / max(kept)) if kept else None
            assert newest == final and len(kept) <= 2, (trial_id, kept, newest, final, replay)
            continue
        losses = [float(r["heldout/loss"]) for r in results[trial_id]]
        best = min(range(len(losses)), key=losses.__getitem__)
        assert kept == {f"checkpoint_{best:06d}", last}, (trial_id, kept, replay)


@pytest.mark.timeout(900)  # a scheduling regression would hang Ray: fail instead
def test_eight_trials_at_once_survive_workers_killed_at_random_moments(
    tiny_model: Path, tmp_path: Path, chaos_seed: int, request: pytest.FixtureRequest
) -> None:
    sweeps = int(request.config.getoption("--chaos-sweeps"))
    for number in range(sweeps):
        seed = chaos_seed + number
        replay = f"sweep {number}: replay with --chaos-seed {chaos_seed}"
        state, most, killed, config = chaos_sweep(tiny_model, tmp_path / f"s{number}",
                                                  rng=random.Random(seed))  # fmt: skip
        assert len(killed) == KILLS_PER_SWEEP, (killed, replay)
        assert most == TRIALS, f"at most {most} trials ran at once; {replay}"
        statuses = {k: (t.status, t.error) for k, t in state.trials.items()}
        assert state.status == "completed" and len(state.trials) == TRIALS, (statuses, replay)
        assert all(t.status == "completed" for t in state.trials.values()), (statuses, replay)
        check_restarts(state, killed, replay)
        hit = {k["trial_id"] for k in killed}
        results = ray_results(state)  # what Ray received, read once for both checks
        uri = config["tracking"]["mlflow_uri"]
        check_histories(state, results, uri, killed=hit, replay=replay)
        check_kept_checkpoints(state, results, killed=hit, replay=replay)
        study = optuna.load_study(study_name=state.name,
                                  storage=f"sqlite:///{state.path / 'optuna.db'}")  # fmt: skip
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS
