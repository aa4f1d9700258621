"""``sweep ui``: a real MLflow UI on the project's store, listening on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from sweeps.cli import main
from sweeps.state import SweepState
from tests.sweeps.conftest import dump_dom, free_port


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on ``port`` (IPv4), from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def start_ui(uri: str, port: int) -> tuple[subprocess.Popen[str], str]:
    """``sweep ui`` in its own process group; returns once /health answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeps.cli", "ui", "--mlflow-uri", uri, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith(f"MLflow UI for {uri}: http://127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    pytest.fail("the MLflow UI did not start")


def stop_ui(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads Linux's socket table")
def test_ui_serves_the_store_on_loopback_and_prints_its_address(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("ui-check", artifact_location=(tmp_path / "a").as_uri())
    client.create_run(experiment, run_name="a-run")
    port = free_port()
    proc, url = start_ui(uri, port)
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/experiments/search", data=b'{"max_results": 10}',
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            names = {e["name"] for e in json.loads(response.read())["experiments"]}
        assert "ui-check" in names
    finally:
        stop_ui(proc)


def page_text(url: str) -> str:
    """What a person sees on an MLflow UI page, rendered by headless Chromium."""
    from lxml import html as lxml_html

    dom = lxml_html.fromstring(dump_dom(url))
    for node in dom.xpath("//script|//style"):
        node.drop_tree()
    return " ".join(" ".join(dom.itertext()).split())  # one space between elements


def test_ui_in_a_browser_shows_the_sweep_its_trials_and_the_champion(
    ab_sweep: dict[str, Any],
) -> None:
    state: SweepState = ab_sweep["state"]
    proc, url = start_ui(ab_sweep["uri"], free_port())
    try:
        runs = page_text(f"{url}/#/experiments/{state.experiment_id}/runs")
        assert "Run Name" in runs and f" {state.name} " in runs  # the parent run's row
        for record in state.trials.values():  # each child run's page names its parent
            child = page_text(f"{url}/#/experiments/{state.experiment_id}/runs/{record.run_id}")
            assert f"{state.name}/{record.trial_id}" in child
            assert f"Parent run {state.name}" in child
        model = page_text(f"{url}/#/models/tiny")
        assert "champion" in model and "Version 1" in model
    finally:
        stop_ui(proc)


def test_ui_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.db"
    assert main(["ui", "--mlflow-uri", f"sqlite:///{missing}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: no MLflow store at {missing}: run a sweep first, or pass --mlflow-uri"
    )
    assert not missing.exists()
