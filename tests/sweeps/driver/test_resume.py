"""``sweep resume`` after the driver is SIGKILLed at several moments: real Ray, Optuna, MLflow.

The sweep runs in its own process group, and the whole group (driver and Ray's workers) is
signalled: ``sweep launch`` is SIGKILLed once a trial has started but not yet reported; the first
``sweep resume`` gets Ctrl-C (SIGINT) once a trial has reported a rung, and must stop cleanly; the
second is SIGKILLed once one trial has ended while another trains; then (``--driver-kills``,
default 4 in all) each further ``sweep resume`` is SIGKILLed at a random moment: a random time
after it started, or after it recorded its first rung. A last ``sweep
resume`` must finish the sweep with exactly num_samples trials, one child run per trial, every
metric step once, an Optuna study whose trials match Ray's, and every trial a stop left
mid-training restarted from a checkpoint. Running it again is harmless. The sweep searches with
NSGA-II on two objectives (Optuna 5.1's NSGA-II sampler cannot be pickled, and Ray pickles the
searcher); every other search.algorithm goes through the same save and restore in
test_searcher_saved.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeps.cli.main import main
from sweeps.tracking.state import TERMINAL, load_state, restores
from tests.conftest import REPO, slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import read_state

NUM_TRIALS = 4
LAUNCH = """
import sys
from sweeps import launch_sweep
launch_sweep(sys.argv[1], name="killed")
"""
RESUME = """
import sys
from sweeps.cli.main import main
sys.exit(main(["resume", "killed", "--state-dir", sys.argv[1]]))
"""
Moment = Callable[[dict[str, Any], float], bool]  # (state.json, seconds since start) -> kill now


def started_not_reported(state: dict[str, Any], _: float) -> bool:
    return any(t["status"] == "running" and t["last_step"] < 0
               for t in state.get("trials", {}).values())  # fmt: skip


def one_reported(state: dict[str, Any], _: float) -> bool:
    return any(t["status"] == "running" and t["last_step"] >= 0
               for t in state.get("trials", {}).values())  # fmt: skip


def one_ended_one_running(state: dict[str, Any], _: float) -> bool:
    trials = state.get("trials", {}).values()
    return any(t["status"] in TERMINAL for t in trials) and any(
        t["status"] == "running" and t["last_step"] >= 0 for t in trials
    )


def after_seconds(delay: float) -> Moment:
    return lambda _, elapsed: elapsed >= delay


def after_progress(delay: float) -> Moment:
    """``delay`` seconds after this driver recorded its first rung or trial end: mid-training,
    or while the driver logs the next report (an ``after_seconds`` kill mostly lands while the
    resume is still starting)."""
    seen: dict[str, float] = {}

    def moment(state: dict[str, Any], elapsed: float) -> bool:
        trials = state.get("trials", {}).values()
        progress = sum(max(t["last_step"], 0) + (t["status"] in TERMINAL) for t in trials)
        if "start" not in seen:
            seen["start"] = progress
        elif progress > seen["start"] and "at" not in seen:
            seen["at"] = elapsed
        return "at" in seen and elapsed >= seen["at"] + delay

    return moment


def random_moment(rng: random.Random) -> Moment:
    if rng.random() < 0.5:
        return after_seconds(rng.uniform(3, 15))
    return after_progress(rng.uniform(0, 6))


def run_and_kill(command: list[str], *, env: dict[str, str], cwd: Path, state_file: Path,
                 moment: Moment, sig: int = signal.SIGKILL,
                 log: Path | None = None) -> dict[str, Any] | None:  # fmt: skip
    """Run the driver in its own process group; send ``sig`` to the group at ``moment`` (SIGINT
    is what Ctrl-C in a terminal sends). Returns the state at the signal, or None when the driver
    finished first."""
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        started, deadline = time.time(), time.time() + 240
        while time.time() < deadline:
            state = read_state(state_file)
            if proc.poll() is not None:
                return None
            if state and moment(state, time.time() - started):
                os.killpg(proc.pid, sig)
                proc.wait(timeout=120)
                return {**state, "exit": proc.returncode, "after": read_state(state_file)}
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("the kill moment never came within 240 s")


@pytest.fixture(scope="module")
def resumed(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
    chaos_seed: int,
) -> dict[str, Any]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("resume")
    data = slice_embedded_data(tmp, train=48, heldout=8)
    config = tiny_sweep_config(  # NSGA-II on two objectives: Optuna 5.1's cannot be pickled
        tiny_model, data, tmp, objective=["heldout/loss", "cost/device_seconds"],
        search={"algorithm": "nsga2", "num_samples": NUM_TRIALS, "max_concurrent": 2},
        scheduler={"type": "none"}, search_space={"num_epochs": 2, "sequence_len": [128]},
        training={"micro_batch_size": 2, "evals_per_epoch": 4, "seed": 1},
    )  # fmt: skip
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "LORA_SWEEP_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}  # fmt: skip
    state_file, state_dir = tmp / "sweeps" / "killed" / "state.json", str(tmp / "sweeps")
    rng = random.Random(chaos_seed)
    extra = max(0, int(request.config.getoption("--driver-kills")) - 3)
    moments = [one_reported, one_ended_one_running,
               *(random_moment(rng) for _ in range(extra))]  # fmt: skip
    kills = [run_and_kill([sys.executable, "-c", LAUNCH, str(path)], env=env, cwd=tmp,
                          state_file=state_file, moment=started_not_reported)]  # fmt: skip
    replay = f"replay with --chaos-seed {chaos_seed}"
    assert kills[0] is not None, f"the launch ended before it could be killed ({replay})"
    for number, moment in enumerate(moments):  # the first: Ctrl-C, a clean stop
        kills.append(run_and_kill([sys.executable, "-c", RESUME, state_dir], env=env, cwd=tmp,
                                  state_file=state_file, moment=moment, log=tmp / f"r{number}.log",
                                  sig=signal.SIGINT if number == 0 else signal.SIGKILL))  # fmt: skip
    assert kills[1] is not None, f"the first resume ended before a trial reported ({replay})"
    assert kills[2] is not None, f"the second resume ended before one ended and one ran ({replay})"
    ended = [sum(t["status"] in TERMINAL for t in k["trials"].values()) if k else None
             for k in kills]  # fmt: skip
    print(f"driver kills (trials ended at each; None: it finished first): {ended}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORA_SWEEP_CACHE", env["LORA_SWEEP_CACHE"])
        code = main(["resume", "killed", "--state-dir", state_dir])
    return {"ctrl_c": kills[1], "before": kills[2], "kills": [k for k in kills if k],
            "code": code, "config": config,
            "ctrl_c_output": (tmp / "r0.log").read_text(),
            "state_dir": state_dir, "replay": replay,
            "state": load_state("killed", state_dir=Path(state_dir))}  # fmt: skip


def test_resume_finishes_the_sweep_with_exactly_num_samples_trials(resumed: dict[str, Any]) -> None:
    state, replay = resumed["state"], resumed["replay"]
    statuses = {k: (t.status, t.error) for k, t in state.trials.items()}
    assert resumed["code"] == 0 and state.status == "completed", (statuses, replay)
    assert len(state.trials) == NUM_TRIALS, (statuses, replay)
    assert all(t.status in TERMINAL for t in state.trials.values()), (statuses, replay)
    ended_before = {k for k, t in resumed["before"]["trials"].items() if t["status"] in TERMINAL}
    for trial_id in ended_before:  # not re-run: same last step and status as before the kill
        old = resumed["before"]["trials"][trial_id]
        assert (state.trials[trial_id].status, state.trials[trial_id].last_step) == (
            old["status"], old["last_step"]), replay  # fmt: skip


def test_mlflow_has_one_parent_one_child_per_trial_and_each_step_once(
    resumed: dict[str, Any],
) -> None:
    state = resumed["state"]
    client = MlflowClient(tracking_uri=resumed["config"]["tracking"]["mlflow_uri"])
    runs = client.search_runs([state.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("lora_sweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == state.parent_run_id]
    replay = resumed["replay"]
    assert [p.info.run_id for p in parents] == [state.parent_run_id], replay
    assert parents[0].info.status == "FINISHED", replay
    children_ids = sorted(c.data.tags["lora_sweep.trial_id"] for c in children)
    assert children_ids == sorted(state.trials), replay
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "heldout/loss")]
        assert steps == sorted(set(steps)), (child.info.run_name, steps, replay)  # each step once
        record = state.trials[child.data.tags["lora_sweep.trial_id"]]
        assert len(steps) == record.rungs, (record.trial_id, steps, replay)  # and none missing
        assert child.info.status in ("FINISHED", "KILLED"), replay


def test_ctrl_c_stops_cleanly_saves_the_state_and_prints_the_resume_command(
    resumed: dict[str, Any],
) -> None:
    """SIGINT to the driver's process group (Ctrl-C in a terminal): the driver stops by itself,
    marks the sweep interrupted, fails no trial, and says how to continue."""
    stopped, replay = resumed["ctrl_c"], resumed["replay"]
    assert stopped["exit"] == 1, (resumed["ctrl_c_output"][-3000:], replay)
    after = stopped["after"]
    assert after["status"] == "interrupted", replay
    assert not any(t["status"] == "failed" for t in after["trials"].values()), (after, replay)
    assert "continue it: sweep resume killed --state-dir" in resumed["ctrl_c_output"], replay


def test_trials_caught_running_restart_from_a_checkpoint(resumed: dict[str, Any]) -> None:
    """A trial that a stopped driver left mid-training (it had reported a rung) continues from a
    checkpoint at the next resume, not from step 0. What the driver left is the state after it
    stopped: a trial can still finish during Ctrl-C's clean stop."""
    state = resumed["state"]
    restarted = {r["trial_id"] for r in restores(state.path) if r["step"] > 0}
    left = [{k for k, t in kill["after"]["trials"].items()
             if t["status"] == "running" and t["last_step"] >= 0} for kill in resumed["kills"]]  # fmt: skip
    assert any(left), f"no stop left a trial mid-training ({resumed['replay']})"  # the third does
    for caught in left:
        assert caught <= restarted, (caught, restarted, resumed["replay"])


def test_optuna_study_matches_ray_trials(resumed: dict[str, Any]) -> None:
    state = resumed["state"]
    study = optuna.load_study(study_name=state.name,
                              storage=f"sqlite:///{state.path / 'optuna.db'}")  # fmt: skip
    finished = [t for t in study.trials if t.state.is_finished()]
    states = [t.state.name for t in study.trials]
    assert len(finished) == NUM_TRIALS == len(study.trials), (states, resumed["replay"])
    completed = sum(t.status == "completed" for t in state.trials.values())
    told = sum(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
    assert told == completed, (states, resumed["replay"])


def test_resuming_again_is_harmless_and_a_running_sweep_refuses_a_second_driver(
    resumed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from filelock import FileLock

    state, replay = resumed["state"], resumed["replay"]
    assert main(["resume", "killed", "--state-dir", resumed["state_dir"]]) == 0, replay
    assert "already completed: nothing to resume" in capsys.readouterr().out, replay
    with FileLock(str(state.path / "driver.lock")):
        assert main(["resume", "killed", "--state-dir", resumed["state_dir"]]) == 2, replay
    assert "is running in another process" in capsys.readouterr().err, replay
