"""``sweep ui``: the MLflow UI on the project's store, bound to 127.0.0.1 unless asked otherwise.

MLflow's UI has no authentication of its own, and MLflow servers have had path-traversal CVEs,
so it listens on the loopback interface by default; ``--host 0.0.0.0`` is the user's explicit
choice, and the command says what it exposes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sweeps.config import ConfigError

LOOPBACK = "127.0.0.1"


def ui_command(mlflow_uri: str, *, host: str = LOOPBACK, port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line for a tracking store (checked to exist when it is local)."""
    if mlflow_uri.startswith("sqlite:///"):
        database = Path(mlflow_uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise ConfigError(
                f"no MLflow store at {database}: run a sweep first, or pass --mlflow-uri"
            )
    elif mlflow_uri.startswith(("http://", "https://")):
        raise ConfigError(f"{mlflow_uri} is a tracking server already: open it in a browser")
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", mlflow_uri,
            "--host", host, "--port", str(port), "--workers", "1"]  # fmt: skip


def serve_ui(mlflow_uri: str, *, host: str = LOOPBACK, port: int = 5000) -> int:
    """Run the MLflow UI in the foreground until Ctrl-C; prints the address to open first."""
    command = ui_command(mlflow_uri, host=host, port=port)
    shown = "127.0.0.1" if host in (LOOPBACK, "localhost") else host
    print(f"MLflow UI for {mlflow_uri}: http://{shown}:{port}  (Ctrl-C stops it)", flush=True)
    if host not in (LOOPBACK, "localhost", "::1"):
        print(f"warning: listening on {host}: anyone who can reach it sees every run, "
              "with no login", file=sys.stderr, flush=True)  # fmt: skip
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 0
