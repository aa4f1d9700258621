"""``sweep ui`` and ``sweep dashboard``: the MLflow UI and optuna-dashboard, on 127.0.0.1.

MLflow's UI has no authentication of its own, and MLflow servers have had path-traversal CVEs,
so it listens on the loopback interface by default; ``--host 0.0.0.0`` is the user's explicit
choice, and the command says what it exposes. The same holds for optuna-dashboard.

Each server runs as a child in a process group of its own, and the command stops that whole group
when it is stopped itself (SIGTERM, SIGINT or SIGHUP): ``mlflow ui`` starts uvicorn as a child of
its own, which a signal to ``mlflow ui`` alone would leave running and answering.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.config import ConfigError
from sweeps.tracking.provenance import hide_uri_password

if TYPE_CHECKING:
    from sweeps.tracking.run_records import RecentSweep

LOOPBACK = "127.0.0.1"
UI_PORT = 5000  # mlflow ui's own default
DASHBOARD_PORT = 8080  # optuna-dashboard's own default
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL
# the MLflow UI opens an experiment as a model-training one (not the GenAI dashboard) with this
ML_WORKFLOW = "workflowType=machine_learning"
# the console stays quiet unless something fails: no line per HTTP request, no library warnings
QUIET_UVICORN = "--log-level warning --no-access-log"
QUIET_ENV = {
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore:starlette.middleware.wsgi is deprecated",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # not its job scheduler's INFO lines
}
# what `mlflow ui` says on every start, whatever happens: not shown (anything else is)
START_BANNER = "[MLflow] Security middleware enabled with default settings (localhost-only)."


def ui_command(mlflow_uri: str, *, host: str = LOOPBACK, port: int = UI_PORT) -> list[str]:
    """The ``mlflow ui`` command line for a tracking store (checked to exist when it is local)."""
    if mlflow_uri.startswith("sqlite:///"):
        database = Path(mlflow_uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise ConfigError(
                f"no MLflow store at {database}: run a sweep first, or pass --mlflow-uri"
            )
    elif mlflow_uri.startswith(("http://", "https://")):
        raise ConfigError(f"{mlflow_uri} is a tracking server already: open it in a browser")
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        mlflow_uri,
        "--registry-store-uri",
        mlflow_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--uvicorn-opts",
        QUIET_UVICORN,
    ]


def sweep_url(base: str, *, experiment_id: str, sweep: str) -> str:
    """The page of a sweep in the MLflow UI: its experiment's runs in model-training mode,
    through the view the sweep saved (its runs grouped, sorted by the objective)."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={sweep}&{ML_WORKFLOW}"


def run_url(base: str, *, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """A run's page, or one of its artefacts shown, in model-training mode: a link without
    ``workflowType`` opens in whichever mode the browser last used (GenAI by default)."""
    page = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{page}/artifacts/{artifact}?{ML_WORKFLOW}" if artifact else f"{page}?{ML_WORKFLOW}"


def sweep_links(base: str, sweep: RecentSweep) -> list[str]:
    """What ``sweep ui`` prints for a sweep: its view, its best trial, its pictures."""
    where = {"base": base, "experiment_id": sweep.experiment_id}
    view = sweep_url(base, experiment_id=sweep.experiment_id, sweep=sweep.name)
    lines = [f"  sweep {sweep.name}: {view}"]
    if sweep.best_run_id:
        lines.append(f"    best trial: {run_url(**where, run_id=sweep.best_run_id)}")
    if sweep.picture:
        lines.append(
            f"    pictures: {run_url(**where, run_id=sweep.parent_run_id, artifact=sweep.picture)}"
        )
    return lines


def serve_ui(mlflow_uri: str, *, host: str = LOOPBACK, port: int = UI_PORT) -> int:
    """Run the MLflow UI until stopped; prints the address, and each recent sweep's page."""
    command = ui_command(mlflow_uri, host=host, port=port)
    base = f"http://{_shown(host)}:{port}"
    print(f"MLflow UI for {hide_uri_password(mlflow_uri)}: {base}  (Ctrl-C stops it)", flush=True)
    if mlflow_uri.startswith("sqlite:///"):
        from sweeps.tracking.mlflow_facade import recent_sweeps

        for sweep in recent_sweeps(mlflow_uri):
            print("\n".join(sweep_links(base, sweep)), flush=True)
    _warn_exposed(host)
    return run_until_stopped(command, env={**os.environ, **QUIET_ENV}, hide=(START_BANNER,))


def dashboard_command(config_file: Path) -> list[str]:
    """The ``optuna-dashboard`` command line (the one installed beside this Python), reading
    storage, host and port from a TOML file: a database password stays out of the process list."""
    program = Path(sys.executable).with_name("optuna-dashboard")
    if not program.is_file():
        raise ConfigError("optuna-dashboard is not installed: pip install optuna-dashboard")
    return [str(program), "--from-config", str(config_file), "--quiet"]


def write_dashboard_config(directory: Path, *, storage: str, host: str, port: int) -> Path:
    """optuna-dashboard's settings as a TOML file only its owner can read (0600)."""
    path = directory / "optuna-dashboard.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            f"[optuna_dashboard]\nstorage = {json.dumps(storage)}\n"
            f"host = {json.dumps(host)}\nport = {int(port)}\n"
        )
    return path


def serve_dashboard(
    storage: str, *, study: str, host: str = LOOPBACK, port: int = DASHBOARD_PORT
) -> int:
    """Run optuna-dashboard on a sweep's study storage until stopped."""
    base = f"http://{_shown(host)}:{port}"
    with tempfile.TemporaryDirectory(prefix="sweep-dashboard-") as tmp:
        command = dashboard_command(
            write_dashboard_config(Path(tmp), storage=storage, host=host, port=port)
        )
        print(
            f"optuna-dashboard for {hide_uri_password(storage)}: {base}  (Ctrl-C stops it)",
            flush=True,
        )
        print(f"  study {study}: {base}{study_page(storage, study)}", flush=True)
        note = importances_note(storage, study)
        if note:
            print(f"  {note}", flush=True)
        _warn_exposed(host, what="every study, and can edit or delete them")
        return run_until_stopped(command)


def study_page(storage: str, study: str) -> str:
    """The study's own page in optuna-dashboard (``/dashboard/studies/ID``), or the list of
    studies when the storage does not know the name."""
    import optuna

    try:
        study_id = optuna.storages.get_storage(storage).get_study_id_from_name(study)
    except KeyError:
        return "/dashboard/"
    return f"/dashboard/studies/{study_id}"


def importances_note(storage: str, study: str) -> str | None:
    """What the dashboard's importances rest on, when that is fewer completed trials than the
    sweep's own picture needs (its floor; docs/perf.md (k))."""
    import optuna

    from sweeps.tracking.study_report import IMPORTANCE_FLOOR

    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return None
    complete = len(loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if complete >= IMPORTANCE_FLOOR:
        return None
    return (
        f"its hyperparameter importances rest on {complete} completed trials: below "
        f"{IMPORTANCE_FLOOR} they name the wrong knob too often (docs/perf.md (k))"
    )


def _shown(host: str) -> str:
    return LOOPBACK if host in (LOOPBACK, "localhost") else host


def _warn_exposed(host: str, *, what: str = "every run") -> None:
    if host not in (LOOPBACK, "localhost", "::1"):
        print(
            f"warning: listening on {host}: anyone who can reach it sees {what}, with no login",
            file=sys.stderr,
            flush=True,
        )


def run_until_stopped(
    command: list[str], *, env: dict[str, str] | None = None, hide: tuple[str, ...] = ()
) -> int:
    """Run a server in a process group of its own until it exits or this process is told to
    stop; either way nothing of the group is left running. Exit 0 when stopped on request.
    Its stderr lines that start with one of ``hide`` are dropped; the rest pass through.

    The stop signals only set a flag, from before the server starts until its group is gone: a
    signal during the start, or a second Ctrl-C during the stop, cannot leave the group running."""
    asked: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, frame: asked.append(signum)) for s in STOP_SIGNALS
    }
    try:
        child = subprocess.Popen(
            command,
            start_new_session=True,
            env=env,
            stderr=subprocess.PIPE if hide else None,
            text=True,
        )
        if hide:
            threading.Thread(target=_pass_through, args=(child, hide), daemon=True).start()
        try:
            while not asked and child.poll() is None:
                time.sleep(0.1)
        finally:
            stop_group(child.pid)
            child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if asked else child.returncode


def _pass_through(child: subprocess.Popen[str], hide: tuple[str, ...]) -> None:
    """Copy the child's stderr to ours, line by line, but for the lines ``hide`` names."""
    for line in child.stderr or ():
        if not line.startswith(hide):
            sys.stderr.write(line)
            sys.stderr.flush()


def stop_group(pgid: int, *, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to every process of the group, SIGKILL to what is left after ``grace`` seconds;
    returns when none is left (a server's children included)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    """Whether any process other than a zombie is left in the group (Linux: /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # stat: state ppid pgrp ...
            return True
    return False
