"""A sweep on an existing Ray cluster (``--address``): a head node and a separate worker node,
each a ``ray start`` process with one CPU, started here on this machine. One CPU per trial and
two trials at once put trials on both nodes; the sweep completes, and each trial's run records
the node it ran on. Real Ray (token authentication on, as Ray's default), Optuna and MLflow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import free_port

RAY = str(Path(sys.executable).parent / "ray")


def ray_node(args: list[str], *, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen([RAY, "start", "--num-cpus=1", "--disable-usage-stats", "--block",
                                 *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def wait_for(log: Path, text: str, *, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text():
            return
        time.sleep(0.5)
    pytest.fail(f"{log.name}: no {text!r} within {timeout} s:\n{log.read_text()[-2000:]}")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A head node and a worker node; yields the head's address. Ray's temp dir is short
    (Unix socket paths are limited to ~107 characters)."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # as the nodes: Ray's token authentication
    temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    env, port = {**os.environ}, free_port()
    head = ray_node(["--head", f"--port={port}", "--include-dashboard=false",
                     f"--temp-dir={temp}"], log=temp / "head.log", env=env)  # fmt: skip
    nodes = [head]
    try:
        wait_for(temp / "head.log", "Ray runtime started")
        address = next(line.split("--address=")[1].strip("'\" ")
                       for line in (temp / "head.log").read_text().splitlines()
                       if "ray start --address=" in line)  # fmt: skip
        nodes.append(ray_node([f"--address={address}"], log=temp / "worker.log", env=env))
        wait_for(temp / "worker.log", "Ray runtime started")
        yield address
    finally:
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGTERM)
        for node in nodes:  # Ray's graceful stop can take half a minute: its processes die here
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.own_ray
@pytest.mark.timeout(900)  # a scheduling regression would hang Ray: fail instead
def test_a_sweep_runs_on_a_two_node_cluster(cluster: str, tiny_model: Path, tmp_path: Path) -> None:
    data = slice_embedded_data(tmp_path, train=24, heldout=4)
    config = tiny_sweep_config(
        tiny_model, data, tmp_path, scheduler={"type": "none"},
        search={"algorithm": "random", "num_samples": 4, "max_concurrent": 2},
        search_space={"num_epochs": 2, "lora_r": [2, 4], "sequence_len": [128]},
        resources={"cpu": 1},  # one CPU per node: two trials at once means one on each node
        evaluation={"max_new_tokens": 4, "batch_size": 4, "logged_generations": 1},
    )  # fmt: skip
    state = launch_sweep(config, name="cluster", address=cluster)
    statuses = {k: (t.status, t.error) for k, t in state.trials.items()}
    assert state.status == "completed" and len(state.trials) == 4, statuses
    assert all(t.status == "completed" for t in state.trials.values()), statuses
    nodes = {t.placement["node_id"] for t in state.trials.values()}
    assert len(nodes) == 2, f"all trials ran on {nodes}"
    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    tagged = {
        client.get_run(t.run_id).data.tags["placement.node_id"] for t in state.trials.values()
    }
    assert tagged == nodes
