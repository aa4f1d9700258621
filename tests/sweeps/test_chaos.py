"""Trial workers SIGKILLed at random moments over several sweeps, and eight trials logging at once.

Each chaos sweep runs 3 trials of 8 rungs, 2 at a time. A watcher waits a random time, picks a
random running trial that has reported under its current worker (so it has a checkpoint), and
SIGKILLs that worker wherever it is: in a training step, an evaluation, writing or persisting a
checkpoint. Every sweep must complete, every killed trial must restart from a checkpoint at or
after its last report, and every child run's metric history must hold each rung once, none
missing. ``--chaos-sweeps N`` sets the number of sweeps (a long run: 30), ``--chaos-seed`` replays
one.
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

from sweeps import launch_sweep
from sweeps.tracking.recorder import logged_metrics
from sweeps.tracking.state import SweepState, restores
from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import launch_counting_concurrency, ray_results, result_rows

KILLS_PER_SWEEP = 2
RUNGS = 8


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
    SweepState, list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    data = slice_embedded_data(tmp, train=48, heldout=4)
    config = tiny_sweep_config(
        tiny_model, data, tmp, scheduler={"type": "none"},
        search={"algorithm": "random", "num_samples": 3, "max_concurrent": 2,
                "seed": rng.randrange(1000)},
        search_space={"num_epochs": 4, "lora_r": [2, 4], "sequence_len": [128]},
        training={"micro_batch_size": 2, "evals_per_epoch": 2},
        recovery={"max_retries": KILLS_PER_SWEEP},
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
        state = launch_sweep(config, name="chaos")
    finally:
        stop.set()
        watcher.join(timeout=10)
    return state, killed, config


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


def check_histories(state: SweepState, uri: str, replay: str) -> None:
    """Every rung of every trial in MLflow once: the steps Ray saw, no gap, no duplicate."""
    client = MlflowClient(tracking_uri=uri)
    results = ray_results(state)
    for trial_id, record in state.trials.items():
        steps = sorted({int(r["step"]) for r in results[trial_id]})
        assert len(steps) == RUNGS, (trial_id, steps, replay)
        for key in logged_metrics(results[trial_id][-1]):
            logged = [m.step for m in client.get_metric_history(record.run_id, key)]
            assert logged == steps, (trial_id, key, logged, steps, replay)


def test_sweeps_survive_trial_workers_killed_at_random_moments(
    tiny_model: Path, tmp_path: Path, chaos_seed: int, request: pytest.FixtureRequest
) -> None:
    sweeps = int(request.config.getoption("--chaos-sweeps"))
    for number in range(sweeps):
        seed = chaos_seed + number
        replay = f"sweep {number}: replay with --chaos-seed {chaos_seed}"
        state, killed, config = chaos_sweep(tiny_model, tmp_path / f"s{number}",
                                            rng=random.Random(seed))  # fmt: skip
        assert len(killed) == KILLS_PER_SWEEP, (killed, replay)
        statuses = {k: (t.status, t.error) for k, t in state.trials.items()}
        assert state.status == "completed" and len(state.trials) == 3, (statuses, replay)
        assert all(t.status == "completed" for t in state.trials.values()), (statuses, replay)
        check_restarts(state, killed, replay)
        check_histories(state, config["tracking"]["mlflow_uri"], replay)
        study = optuna.load_study(study_name=state.name,
                                  storage=f"sqlite:///{state.path / 'optuna.db'}")  # fmt: skip
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3, replay


@pytest.mark.timeout(900)  # a scheduling regression would hang Ray: fail instead
def test_eight_concurrent_trials_log_every_metric_point_exactly_once(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Eight trials at once (a quarter CPU each) through the one recorder: MLflow holds exactly
    the points Ray received. With keep_checkpoints 1 by objective, each trial keeps its best
    checkpoint and its latest (which restarts need), and nothing else."""
    data = slice_embedded_data(tmp_path, train=16, heldout=4)
    config = tiny_sweep_config(
        tiny_model, data, tmp_path, scheduler={"type": "none"},
        search={"algorithm": "random", "num_samples": 8, "max_concurrent": 8},
        search_space={"num_epochs": 3, "lora_r": [2, 4], "sequence_len": [128],
                      "learning_rate": {"type": "loguniform", "low": 1e-3, "high": 3e-2}},
        training={"micro_batch_size": 4, "evals_per_epoch": 2},
        resources={"cpu": 0.25}, objective={"metric": "heldout/loss"},
        recovery={"keep_checkpoints": 1, "keep_best_by": "objective"},
        evaluation={"max_new_tokens": 4, "batch_size": 4, "logged_generations": 1},
    )  # fmt: skip
    state, most = launch_counting_concurrency(config, name="eight", num_cpus=2)
    assert state.status == "completed" and len(state.trials) == 8
    assert most == 8, f"at most {most} trials ran at once"
    results = ray_results(state)

    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    for trial_id, record in state.trials.items():
        rows = results[trial_id]
        for key in logged_metrics(rows[-1]):
            sent = [(int(r["step"]), pytest.approx(float(r[key]))) for r in rows]
            logged = [(m.step, m.value) for m in client.get_metric_history(record.run_id, key)]
            assert sorted(logged) == sent, (trial_id, key)
        losses = [float(r["heldout/loss"]) for r in rows]
        best = min(range(len(rows)), key=losses.__getitem__)
        kept = {p.name for p in next((state.path / "ray" / "tune").glob(f"*{trial_id}*")).glob(
            "checkpoint_*")}  # fmt: skip
        assert kept == {f"checkpoint_{best:06d}", f"checkpoint_{len(rows) - 1:06d}"}, trial_id
