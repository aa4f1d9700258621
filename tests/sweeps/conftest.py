"""Fixtures shared by the sweep tests: a small finished sweep, and headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from sweeps.tracking.state import SweepState, TrialRecord
from tests.conftest import slice_embedded_data, tiny_sweep_config

HELDOUT_ROWS = 12


@contextmanager
def shared_cache(tmp_path_factory: pytest.TempPathFactory, name: str = "cache") -> Iterator[None]:
    """The fast tier's cache, for fixtures wider than one test (set before the autouse one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORA_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / name))
        yield


def _start_shared_ray(tmp_path_factory: pytest.TempPathFactory) -> None:
    from sweeps import tune

    with shared_cache(tmp_path_factory):  # Ray's workers keep the environment it started with
        tune.start_ray(address=None, num_cpus=None, num_gpus=None)


@pytest.fixture(scope="session", autouse=True)
def shared_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for the sweeps this process launches, as `sweep launch` starts it. A sweep
    joins a running Ray (as it joins a cluster) and leaves it running, so the sweeps here skip
    Ray's start and stop (about 8 s on 2 cores each). A test that needs a Ray of its own (logical
    GPUs, a cluster) is marked ``own_ray``. Sweeps run in subprocesses start their own, as
    users' do."""
    from sweeps import tune

    _start_shared_ray(tmp_path_factory)
    yield
    tune.stop_ray()


@pytest.fixture(autouse=True)
def _own_ray(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``own_ray`` runs with no Ray started (its sweep starts and stops its own).
    They run last (tests/conftest.py orders them), so the shared Ray is not started again."""
    if request.node.get_closest_marker("own_ray") is None:
        yield
        return
    from sweeps import tune

    tune.stop_ray()
    yield
    tune.stop_ray()


@dataclass(frozen=True)
class FinishedSweep:
    """A finished sweep several tests read: its state, its MLflow store (URI and a client on it,
    the registry included) and the directory it lives in."""

    state: SweepState
    uri: str
    client: MlflowClient
    tmp: Path


@dataclass(frozen=True)
class ABReport(FinishedSweep):
    """The ab sweep with ``sweep compare champion base`` run on it: the report's directory, the
    best trial (the champion) and its registry version."""

    out: Path
    best: TrialRecord
    version: ModelVersion


def finished_sweep(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, *, name: str,
    cache: str = "cache",
) -> FinishedSweep:  # fmt: skip
    """A two-trial grid sweep (lora_r 2 and 4, no early stopping) in its own MLflow store."""
    tmp = tmp_path_factory.mktemp(name)
    data = slice_embedded_data(tmp, train=24, heldout=HELDOUT_ROWS)
    config = tiny_sweep_config(
        tiny_model, data, tmp, search={"algorithm": "grid", "num_samples": 2, "max_concurrent": 2},
        scheduler={"type": "none"}, search_space={"num_epochs": 1, "lora_r": [2, 4],
        "learning_rate": 1e-3, "lora_alpha": 4, "sequence_len": [128]},
    )  # fmt: skip
    with shared_cache(tmp_path_factory, cache):
        state = launch_sweep(config, name=name)
    assert state.status == "completed" and len(state.trials) == 2
    uri = config["tracking"]["mlflow_uri"]
    return FinishedSweep(state, uri, MlflowClient(uri, registry_uri=uri), tmp)


def chromium() -> str:
    """The headless browser (Debian's ``chromium``; ``make test`` installs it)."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is not installed: `make test` installs it (apt-get install chromium)"
            )
        pytest.skip("chromium is not installed (`make test` installs it)")
    return found


def dump_dom(url: str, *, budget_ms: int = 20_000) -> str:
    """The page's DOM after its scripts ran for ``budget_ms`` of virtual time."""
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--dump-dom", f"--virtual-time-budget={budget_ms}", url],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot_and_dom(url: str, screenshot: Path, *, budget_ms: int = 20_000) -> str:
    """One headless Chromium visit: a 1400x900 screenshot of the page, and its DOM, returned
    (the tests check the DOM for what the screenshot shows)."""
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--dump-dom", f"--screenshot={screenshot}", "--window-size=1400,900",
         f"--virtual-time-budget={budget_ms}", url],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def visible_text(dom: str) -> str:
    """What a person reads on a page: its text, scripts and styles left out, spaces collapsed."""
    from lxml import html as lxml_html

    tree = lxml_html.fromstring(dom)
    for node in tree.xpath("//script|//style"):
        node.drop_tree()
    return " ".join(" ".join(tree.itertext()).split())


def grid_rows(dom: str) -> list[dict[str, str]]:
    """The MLflow UI's run table as a person reads it, row by row: each row's cells by column
    id (``attributes.`Run Name```, ``metrics.`k```, ...) and its ``row-id``. The grid draws a
    row's pinned and scrolled cells apart; they share its ``row-index``. A run name's cell
    starts with the run's colour (``#0e538b``), dropped here."""
    import re

    from lxml import html as lxml_html

    rows: dict[int, dict[str, str]] = {}
    for row in lxml_html.fromstring(dom).xpath("//*[@role='row'][@row-index]"):
        cells = rows.setdefault(int(row.get("row-index")), {"row-id": row.get("row-id") or ""})
        for cell in row.xpath(".//*[@role='gridcell'][@col-id]"):
            text = " ".join(cell.text_content().split())
            cells[cell.get("col-id")] = re.sub(r"^#[0-9a-f]{6}", "", text)
    return [rows[index] for index in sorted(rows)]


def assert_picture(path: Path, *, min_bytes: int = 5_000) -> None:
    """A PNG that shows something: not empty, not one flat colour."""
    import matplotlib.image

    assert path.is_file() and path.stat().st_size > min_bytes, path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and float(pixels[..., :3].std()) > 0.02, path


@pytest.fixture(scope="session")
def ab_sweep(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedSweep:
    """A finished sweep whose best trial is the registry's only champion (promoted with
    --force: the tiny model's adapters are no better than its base)."""
    from sweeps.cli.main import main

    sweep = finished_sweep(tiny_model, tmp_path_factory, name="ab")
    state = sweep.state
    with shared_cache(tmp_path_factory):
        code = main(["promote", "ab", "--state-dir", str(state.path.parent),
                     "--force", "tiny test model: no real gain to find"])  # fmt: skip
    assert code == 0
    return sweep


@pytest.fixture(scope="session")
def ab_report(ab_sweep: FinishedSweep, tmp_path_factory: pytest.TempPathFactory) -> ABReport:
    """``sweep compare champion base`` on the ab sweep: its report, and a compare run in the
    sweep's experiment."""
    from sweeps.cli.main import main

    out = tmp_path_factory.mktemp("report")
    state = ab_sweep.state
    args = ["compare", "champion", "base", "--out", str(out), "--samples", "5",
            "--state-dir", str(state.path.parent), "--mlflow-uri", ab_sweep.uri]  # fmt: skip
    with shared_cache(tmp_path_factory):
        assert main(args) == 0
    champion = ab_sweep.client.get_model_version_by_alias("tiny", "champion")
    best = state.trials[champion.tags["lora_sweep.trial_id"]]
    assert best.trial_id == state.best_trial().trial_id
    return ABReport(**vars(ab_sweep), out=out, best=best, version=champion)


def launch_counting_concurrency(config: dict[str, Any], *, name: str,
                                **launch: Any) -> tuple[Any, int]:  # fmt: skip
    """Run a sweep while watching state.json; returns its state and the most trials it showed
    running at once (the driver's view)."""
    import threading
    import time

    stop, most = threading.Event(), [0]
    state_file = Path(config["tracking"]["state_dir"]) / name / "state.json"

    def watch() -> None:
        while not stop.is_set():
            trials = read_state(state_file).get("trials", {}).values()
            most[0] = max(most[0], sum(t["status"] == "running" for t in trials))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        state = launch_sweep(config, name=name, **launch)
    finally:
        stop.set()
        watcher.join(timeout=5)
    return state, most[0]


def wait_until_up(url: str, *, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for a server started as ``proc`` to answer ``url`` (its log shown if it dies)."""
    import time
    import urllib.request

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"sweep serve did not answer in 180 s: {log.read_text()[-3000:]}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_mlflow_server(backend: str, *, artifacts: Path, log: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 with proxied artefacts; yields its URL."""
    import sys
    import time
    import urllib.request

    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
             "--workers", "1"], stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"mlflow server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def postgres_binaries() -> Path | None:
    """The directory of Debian's PostgreSQL server programs (initdb, pg_ctl), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server started here on 127.0.0.1 (trust auth, a throwaway cluster); yields
    ``postgresql://postgres@127.0.0.1:PORT`` (create databases under it). Run as the postgres
    user when the tests run as root, as PostgreSQL refuses root."""
    import tempfile

    binaries = postgres_binaries()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: `make test` installs it (apt-get install "
                        "postgresql)")  # fmt: skip
        pytest.skip("PostgreSQL is not installed (`make test` installs it)")
    home = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_postgres:
        shutil.chown(home, "postgres")
    port, data = free_port(), home / "data"

    def run(*command: str) -> None:
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w",
        "-o", f"-h 127.0.0.1 -p {port} -k {home}", "start")  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def create_database(server: str, name: str) -> str:
    """A fresh database on the ``postgres`` server; returns its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def read_state(path: Path) -> dict[str, Any]:
    """A sweep's state.json as it is on disk now ({} while it is missing or being replaced)."""
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    except (OSError, json.JSONDecodeError):
        return {}


def result_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one trial's Ray result.json."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ray_results(state: Any) -> dict[str, list[dict[str, Any]]]:
    """Ray's own per-trial result log (a restarted trial's replayed rungs included): the
    independent record to compare MLflow against."""
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in (state.path / "ray" / "tune").glob("*/result.json"):
        for row in result_rows(path):
            results[row["trial_id"]].append(row)
    return results


def refused_launch(config: dict[str, Any], path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Write ``config`` to ``path`` and run ``sweep launch`` on it, which must exit 2; returns
    what it printed to stderr."""
    import yaml

    from sweeps.cli.main import main

    path.write_text(yaml.safe_dump(config))
    assert main(["launch", str(path), "--name", "refused"]) == 2
    return capsys.readouterr().err.strip()
