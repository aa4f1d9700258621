"""``sweep ui``: a real MLflow UI on the project's store, listening on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeps.cli.main import main
from sweeps.tracking.state import RAY_TRIAL_ID, SweepState
from tests.sweeps.conftest import (
    ABReport,
    FinishedSweep,
    assert_picture,
    dump_dom,
    free_port,
    grid_rows,
    screenshot_and_dom,
    visible_text,
)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on ``port`` (IPv4), from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def start_server(command: list[str], *, health: str) -> tuple[subprocess.Popen[str], list[str]]:
    """A ``sweep`` server command in its own process group (so a failed test cleans up whole);
    returns it and the lines it printed before its server answered ``health``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeps.cli.main", *command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    printed: list[str] = []  # read beside the wait: a quiet server prints nothing more
    threading.Thread(target=lambda: printed.extend(proc.stdout or ()), daemon=True).start()
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=2):
                return proc, printed  # ours came first; it goes on filling while the server runs
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    pytest.fail(f"{command[0]} did not start: {printed}")


def start_ui(uri: str, port: int) -> tuple[subprocess.Popen[str], str]:
    """``sweep ui`` on a store; returns once /health answers."""
    url = f"http://127.0.0.1:{port}"
    proc, printed = start_server(["ui", "--mlflow-uri", uri, "--port", str(port)],
                                 health=f"{url}/health")  # fmt: skip
    assert printed[0].startswith(f"MLflow UI for {uri}: {url}")
    return proc, url


def stopped_by_signal(proc: subprocess.Popen[str], port: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the command alone (not its group, as ``kill PID`` does): it exits 0 and
    nothing listens on its port or answers there any more."""
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=60) == 0
    assert listening_addresses(port) == set()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def stop_ui(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads Linux's socket table")
def test_ui_serves_the_store_on_loopback_and_stops_whole_on_sigterm(tmp_path: Path) -> None:
    """``mlflow ui`` runs uvicorn as a child of its own: SIGTERM to ``sweep ui`` alone must
    stop both, leaving nothing listening."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("ui-check", artifact_location=(tmp_path / "a").as_uri())
    client.create_run(experiment, run_name="a-run")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, printed = start_server(["ui", "--mlflow-uri", uri, "--port", str(port)],
                                 health=f"{url}/health")  # fmt: skip
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        request = urllib.request.Request(
            f"{url}/api/2.0/mlflow/experiments/search", data=b'{"max_results": 10}',
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            names = {e["name"] for e in json.loads(response.read())["experiments"]}
        assert "ui-check" in names
        stopped_by_signal(proc, port, signal.SIGTERM)
        time.sleep(0.5)  # the reader thread takes the last lines
        # quiet unless something fails: our lines only, no request log, no library warning
        assert [line for line in printed if not line.startswith(("MLflow UI for", "  sweep "))
                and line.strip()] == [], printed  # fmt: skip
    finally:
        if proc.poll() is None:
            stop_ui(proc)


def page_text(url: str) -> str:
    """What a person sees on an MLflow UI page, rendered by headless Chromium."""
    return visible_text(dump_dom(url))


def test_ui_opens_the_sweep_grouped_best_first_with_deep_links_in_training_mode(
    ab_report: ABReport, tmp_path: Path,
) -> None:  # fmt: skip
    """The page ``sweep ui`` prints for a sweep: the sweep as one unfolded group whose row holds
    the best objective, the parent run (best objective, status) and its trials under it, best
    first, distinct names with the learning rate as a person writes it; the compare run folded
    away. Its links to the best trial and to each picture open in model-training mode and show
    what they name."""
    state: SweepState = ab_report.state
    client: MlflowClient = ab_report.client
    url = f"http://127.0.0.1:{free_port()}"
    proc, printed = start_server(["ui", "--mlflow-uri", ab_report.uri, "--port",
                                  url.rsplit(":", 1)[1]], health=f"{url}/health")  # fmt: skip
    try:
        time.sleep(1)  # the links are printed once the store was read
        printed = [line.rstrip("\n") for line in printed]
        page = f"{url}/#/experiments/{state.experiment_id}/runs?viewStateShareKey={state.name}"
        assert f"  sweep {state.name}: {page}&workflowType=machine_learning" in printed, printed
        dom = screenshot_and_dom(f"{page}&workflowType=machine_learning", tmp_path / "landing.png")
        assert_picture(tmp_path / "landing.png")
        landing = visible_text(dom)
        assert "Detect Issues" not in landing and "Traces 0" not in landing  # not GenAI mode
        assert f"Sort: {state.objective_metric}" in landing and "Group by: sweep" in landing
        rows = grid_rows(dom)
        name, metric = "attributes.`Run Name`", f"metrics.`{state.objective_metric}`"
        best = state.best_trial()
        assert best is not None
        objective = best.metrics[state.objective_metric]
        goes = "min" if state.objective_mode == "min" else "max"
        # the sweep's group, unfolded: its row holds the best objective
        group, *members, folded = rows
        assert group[name] == f"Group: {state.name}{len(state.trials) + 1}"
        assert float(group[metric].removesuffix(f" ({goes})")) == pytest.approx(objective)
        # its parent run: the best objective and the sweep's status
        parent = next(r for r in members if r[name] == state.name)
        assert (
            parent["row-id"].endswith(state.parent_run_id)
            and parent["tags.`status`"] == "completed"
        )
        assert float(parent[metric]) == pytest.approx(objective)
        # its trials: best first, named as everywhere else, with the learning rate as written
        trials = [r for r in members if r is not parent]
        assert sorted(r[name] for r in trials) == sorted(
            f"{t.name} lr 1.00e-03 r {t.params['lora_r']}" for t in state.trials.values()
        )
        values = [float(r[metric]) for r in trials]
        assert values == sorted(values, reverse=goes == "max")
        assert len({r[name][:20] for r in members}) == len(members)
        # the compare run, out of the trials' way: one click away in a folded group
        every = client.search_runs([state.experiment_id])
        others = [r for r in every if r.data.tags.get("sweep") != state.name]
        assert any(r.data.tags.get("lora_sweep.kind") == "compare" for r in others)
        assert folded[name] == f"Additional runs{len(others)}" and "compare" not in landing

        at = printed.index(f"  sweep {state.name}: {page}&workflowType=machine_learning")
        best_link, pictures_link = printed[at + 1].split(": ", 1), printed[at + 2].split(": ", 1)
        assert best_link[0] == "    best trial" and pictures_link[0] == "    pictures"
        child = page_text(best_link[1])
        assert best_link[1].endswith("?workflowType=machine_learning")
        assert best.name in child and f"Parent run {state.name}" in child
        assert "Evaluations" not in child  # GenAI mode's breadcrumb
        pictures = sorted(a.path for a in client.list_artifacts(state.parent_run_id,
                                                                 "sweep_plots"))  # fmt: skip
        assert pictures_link[1].endswith(f"/artifacts/{pictures[0]}?workflowType=machine_learning")
        for picture in pictures:
            link = pictures_link[1].replace(pictures[0], picture)
            dom = screenshot_and_dom(link, tmp_path / "picture.png")
            assert f'alt="{picture}"' in dom, picture  # the picture itself, not an empty folder
        model = page_text(f"{url}/#/models/tiny")
        assert "champion" in model and "Version 1" in model
    finally:
        stop_ui(proc)


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads Linux's socket table")
def test_dashboard_shows_the_sweeps_study_and_stops_whole_on_sigint(
    ab_sweep: FinishedSweep, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state: SweepState = ab_sweep.state
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, printed = start_server(["dashboard", state.name, "--state-dir", str(state.path.parent),
                                  "--port", str(port)], health=f"{base}/api/studies")  # fmt: skip
    try:
        optuna_db = state.path / "optuna.db"
        assert printed[0].startswith(f"optuna-dashboard for sqlite:///{optuna_db}: {base}")
        assert listening_addresses(port) == {"127.0.0.1"}
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as response:
            studies = json.loads(response.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == [state.name]
        listing = visible_text(dump_dom(f"{base}/dashboard/"))
        assert f"1. {state.name} Direction: MAXIMIZE" in listing, listing[:500]
        study = f"{base}/dashboard/studies/{studies[0]['study_id']}"
        assert printed[1].rstrip("\n") == f"  study {state.name}: {study}"  # its page, not the list
        assert printed[2].startswith("  its hyperparameter importances rest on 2 completed trials")
        page = visible_text(screenshot_and_dom(study, tmp_path / "dash.png"))
        assert_picture(tmp_path / "dash.png")
        for seen in (f"{state.name} (id=", "History", "Hyperparameter Importance",
                     "Intermediate values", "trial #0", "trial #1"):  # fmt: skip
            assert seen in page, (seen, page[:800])
        # one name per trial: the dashboard's "trial #N" is sweep status's "#N <Ray id>"
        api = f"{base}/api/studies/{studies[0]['study_id']}?after=0"
        with urllib.request.urlopen(api, timeout=10) as response:
            trials = json.loads(response.read())["trials"]
        named = {f"#{t['number']} {a['value']}" for t in trials for a in t["user_attrs"]
                 if a["key"] == RAY_TRIAL_ID}  # fmt: skip
        assert named == {r.name for r in state.trials.values()} and len(named) == len(trials)
        assert main(["status", state.name, "--state-dir", str(state.path.parent)]) == 0
        status = capsys.readouterr().out
        assert all(name in status for name in named), status
        stopped_by_signal(proc, port, signal.SIGINT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_ui_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.db"
    assert main(["ui", "--mlflow-uri", f"sqlite:///{missing}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: no MLflow store at {missing}: run a sweep first, or pass --mlflow-uri"
    )
    assert not missing.exists()
