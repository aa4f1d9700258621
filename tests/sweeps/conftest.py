"""Fixtures shared by the sweep tests: a small finished sweep, and headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from tests.conftest import slice_embedded_data, tiny_sweep_config

HELDOUT_ROWS = 12


@contextmanager
def shared_cache(tmp_path_factory: pytest.TempPathFactory, name: str = "cache") -> Iterator[None]:
    """The fast tier's cache, for fixtures wider than one test (set before the autouse one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORA_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / name))
        yield


def finished_sweep(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, *, name: str,
    cache: str = "cache",
) -> dict[str, Any]:  # fmt: skip
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
    return {"state": state, "uri": uri, "client": MlflowClient(uri, registry_uri=uri), "tmp": tmp}


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


@pytest.fixture(scope="session")
def ab_sweep(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished sweep whose best trial is the registry's only champion (promoted with
    --force: the tiny model's adapters are no better than its base)."""
    from sweeps.cli import main

    sweep = finished_sweep(tiny_model, tmp_path_factory, name="ab")
    state = sweep["state"]
    with shared_cache(tmp_path_factory):
        code = main(["promote", "ab", "--state-dir", str(state.path.parent),
                     "--force", "tiny test model: no real gain to find"])  # fmt: skip
    assert code == 0
    return sweep


def launch_counting_concurrency(config: dict[str, Any], *, name: str,
                                **launch: Any) -> tuple[Any, int]:  # fmt: skip
    """Run a sweep while watching state.json; returns its state and the most trials it showed
    running at once (the driver's view)."""
    import json
    import threading
    import time

    stop, most = threading.Event(), [0]
    state_file = Path(config["tracking"]["state_dir"]) / name / "state.json"

    def watch() -> None:
        while not stop.is_set():
            try:
                trials = json.loads(state_file.read_text())["trials"].values()
            except (OSError, ValueError, KeyError):
                trials = []
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
