"""``sweep resume`` after the driver is SIGKILLed mid-sweep: real Ray, Optuna and MLflow.

The sweep runs in its own process group. When state.json shows a trial ended and another
running, the whole group (driver and Ray's workers) is SIGKILLed. ``sweep resume`` must then
finish the sweep with exactly num_samples trials, one child run per trial, every metric step once,
and an Optuna study whose trials match Ray's. Running it again is harmless.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeps.cli import main
from sweeps.state import TERMINAL, load_state
from tests.conftest import REPO, slice_embedded_data, tiny_sweep_config

NUM_TRIALS = 4
LAUNCH = """
import sys
from sweeps import launch_sweep
launch_sweep(sys.argv[1], name="killed")
"""


def read_state(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    except (OSError, json.JSONDecodeError):
        return {}


def kill_when_one_trial_ended(proc: subprocess.Popen[bytes], state: Path) -> None:
    deadline = time.time() + 240
    while time.time() < deadline:
        trials = read_state(state).get("trials", {}).values()
        if any(t["status"] in TERMINAL for t in trials) and any(
            t["status"] == "running" and t["last_step"] >= 0 for t in trials
        ):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before it could be killed (exit {proc.returncode})")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("no trial ended within 240 s")


@pytest.fixture(scope="module")
def resumed(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("resume")
    data = slice_embedded_data(tmp, train=48, heldout=8)
    config = tiny_sweep_config(
        tiny_model, data, tmp, search={"num_samples": NUM_TRIALS, "max_concurrent": 2},
        scheduler={"type": "none"}, search_space={"num_epochs": 2, "sequence_len": [128]},
        training={"micro_batch_size": 2, "evals_per_epoch": 4, "seed": 1},
    )  # fmt: skip
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "LORA_SWEEP_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(path)], cwd=tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    state_file = tmp / "sweeps" / "killed" / "state.json"
    kill_when_one_trial_ended(proc, state_file)
    before = read_state(state_file)
    state_dir = str(tmp / "sweeps")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORA_SWEEP_CACHE", env["LORA_SWEEP_CACHE"])
        code = main(["resume", "killed", "--state-dir", state_dir])
    return {"before": before, "code": code, "config": config, "state_dir": state_dir,
            "state": load_state("killed", state_dir=Path(state_dir))}  # fmt: skip


def test_resume_finishes_the_sweep_with_exactly_num_samples_trials(resumed: dict[str, Any]) -> None:
    state = resumed["state"]
    statuses = {k: (t.status, t.error) for k, t in state.trials.items()}
    assert resumed["code"] == 0 and state.status == "completed", statuses
    assert len(state.trials) == NUM_TRIALS
    assert all(t.status in TERMINAL for t in state.trials.values())
    ended_before = {k for k, t in resumed["before"]["trials"].items() if t["status"] in TERMINAL}
    for trial_id in ended_before:  # not re-run: same last step and status as before the kill
        old = resumed["before"]["trials"][trial_id]
        assert (state.trials[trial_id].status, state.trials[trial_id].last_step) == (
            old["status"], old["last_step"])  # fmt: skip


def test_mlflow_has_one_parent_one_child_per_trial_and_each_step_once(
    resumed: dict[str, Any],
) -> None:
    state = resumed["state"]
    client = MlflowClient(tracking_uri=resumed["config"]["tracking"]["mlflow_uri"])
    runs = client.search_runs([state.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("lora_sweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == state.parent_run_id]
    assert [p.info.run_id for p in parents] == [state.parent_run_id]
    assert parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags["lora_sweep.trial_id"] for c in children) == sorted(state.trials)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "heldout/loss")]
        assert steps == sorted(set(steps)), (child.info.run_name, steps)  # each step once
        assert child.info.status in ("FINISHED", "KILLED")


def test_optuna_study_matches_ray_trials(resumed: dict[str, Any]) -> None:
    state = resumed["state"]
    study = optuna.load_study(study_name=state.name,
                              storage=f"sqlite:///{state.path / 'optuna.db'}")  # fmt: skip
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == NUM_TRIALS == len(study.trials)
    completed = sum(t.status == "completed" for t in state.trials.values())
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in finished) == completed


def test_resuming_again_is_harmless_and_a_running_sweep_refuses_a_second_driver(
    resumed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from filelock import FileLock

    state = resumed["state"]
    assert main(["resume", "killed", "--state-dir", resumed["state_dir"]]) == 0
    assert "already completed: nothing to resume" in capsys.readouterr().out
    with FileLock(str(state.path / "driver.lock")):
        assert main(["resume", "killed", "--state-dir", resumed["state_dir"]]) == 2
    assert "is running in another process" in capsys.readouterr().err
