"""``sweep serve REF [REF ...]``: a base model and its adapters behind an OpenAI-compatible
chat-completions endpoint, on 127.0.0.1.

Each REF is anything ``sweep compare`` accepts (``champion``, ``SWEEP``, ``SWEEP/TRIAL``, a run
id, an adapter directory, ``models:/NAME/VERSION``) or ``base``, optionally named: ``NAME=REF``.
A request's ``model`` picks the adapter by that name (``base`` is the model without one). Every
adapter must have been trained on the same base model, which is loaded once.

- ``/v1/chat/completions`` (the model's chat template; greedy at temperature 0, the default),
  ``/v1/models`` and ``/health``, in the shapes the ``openai`` client reads.
- Loopback by default; ``--host`` elsewhere is the user's explicit choice and is warned about.
- ``--api-key-env VAR``: requests must carry ``Authorization: Bearer <$VAR>``. The key is read
  from the environment and never printed or logged.
- On CPU, transformers (``trainers/chat.py``). Where a CUDA GPU and vLLM exist, ``--engine auto``
  hands over to ``vllm serve`` with the adapters (``--enable-lora``); on a GPU without vLLM it
  prints the exact command.
- No request holds it hostage (``ServeLimits``, sweeps/serving/serve_app.py), and SIGTERM or Ctrl-C stop
  it within seconds, mid-generation too: the answer being generated ends at its next token, and
  a process still held after ``STOP_GRACE`` seconds exits anyway.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sweeps.config import ConfigError
from sweeps.serving.serve_limits import ServeLimits
from sweeps.tracking.ui import LOOPBACK

if TYPE_CHECKING:
    from types import FrameType

    from starlette.types import ASGIApp

LOOPBACK_HOSTS = (LOOPBACK, "::1", "localhost")
SERVE_PORT = 8000  # vLLM's and most OpenAI-compatible servers' default
BASE_REF = "base"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$")
Engine = Literal["auto", "transformers", "vllm"]
VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts
STOP_GRACE = 3.0  # seconds a stopping server gives its open requests to be answered


@dataclass(frozen=True)
class Served:
    """What one ``sweep serve`` serves: the base model directory and the adapters by name."""

    base: Path
    adapters: dict[str, Path]
    trust_remote_code: bool = False

    @property
    def names(self) -> list[str]:
        return [BASE_REF, *self.adapters]


# --------------------------------------------------------------------------- what is served
def resolve_served(
    refs: Sequence[str], *, state_dir: Path, mlflow_uri: str, base_model: str | None = None
) -> Served:
    """Each ``[NAME=]REF`` resolved to an adapter directory, and their one base model."""
    from sweeps.serving.refs import resolve_adapter

    adapters: dict[str, Path] = {}
    bases: dict[str, tuple[Path, bool]] = {}  # adapter name -> its base directory, remote code
    for entry in refs:
        name, ref = split_named(entry)
        if ref == BASE_REF:
            continue
        if name in adapters or name == BASE_REF:
            raise ConfigError(f"{entry}: the name {name!r} is taken; name it NAME={ref}")
        adapter = resolve_adapter(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
        adapters[name] = adapter.path
        bases[name] = _adapter_base(adapter.base_model, sweep=adapter.sweep, state_dir=state_dir)
    base = _one_base(bases, base_model=base_model)
    remote = any(flag for _, flag in bases.values())
    return Served(base=base, adapters=adapters, trust_remote_code=remote)


def split_named(entry: str) -> tuple[str, str]:
    """``NAME=REF`` -> (NAME, REF); a bare REF is named by itself, a directory by its last part."""
    name, sep, ref = entry.partition("=")
    if not sep:
        ref = entry
        name = Path(entry).name if Path(entry).expanduser().is_dir() else entry
    if not NAME.match(name):
        raise ConfigError(f"{entry}: a served name is letters, digits and ._@:/- (NAME=REF)")
    return name, ref


def _adapter_base(recorded: str, *, sweep: str, state_dir: Path) -> tuple[Path, bool]:
    """The directory of the base model an adapter was trained on: its sweep's, when known."""
    from sweeps.serving.scoring import load_spec
    from sweeps.tracking.state import list_sweeps, load_state

    if sweep and sweep in list_sweeps(state_dir):
        spec = load_spec(load_state(sweep, state_dir=state_dir))
        return Path(spec.model_path).resolve(), spec.trust_remote_code
    return base_directory(recorded), False


def base_directory(name: str) -> Path:
    from trainers.models import ModelError, resolve_base_model

    if Path(name).expanduser().is_dir():
        return Path(name).expanduser().resolve()
    try:
        return resolve_base_model(name, progress=print).path.resolve()
    except ModelError as exc:
        raise ConfigError(f"base model {name}: {exc}") from None


def _one_base(bases: dict[str, tuple[Path, bool]], *, base_model: str | None) -> Path:
    paths = {path for path, _ in bases.values()}
    if base_model is not None:
        paths.add(base_directory(base_model))
    if not paths:
        raise ConfigError(
            "sweep serve base needs --base-model NAME|DIR (an adapter brings its base model)"
        )
    if len(paths) > 1:
        which = "; ".join(f"{n}: {p}" for n, (p, _) in bases.items())
        raise ConfigError(
            f"the adapters were trained on different base models ({which}); "
            "serve one base model's adapters at a time"
        )
    return paths.pop()


# --------------------------------------------------------------------------- running it
def vllm_command(served: Served, *, host: str, port: int) -> list[str]:
    """The ``vllm serve`` command that serves the same models under the same names."""
    command = [
        "vllm",
        "serve",
        str(served.base),
        "--served-model-name",
        BASE_REF,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if served.adapters:
        modules = [f"{name}={path}" for name, path in served.adapters.items()]
        command += [
            "--enable-lora",
            "--max-lora-rank",
            str(_max_rank(served)),
            "--lora-modules",
            *modules,
        ]
    if served.trust_remote_code:
        command.append("--trust-remote-code")
    return command


def _max_rank(served: Served) -> int:
    import json

    ranks = [16]  # vLLM's default
    for path in served.adapters.values():
        config = json.loads((path / "adapter_config.json").read_text())
        ranks += [int(config.get("r", 8)), *map(int, (config.get("rank_pattern") or {}).values())]
    return next(r for r in VLLM_RANKS if r >= max(ranks))


def read_api_key(variable: str | None) -> str | None:
    if variable is None:
        return None
    key = os.environ.get(variable, "")
    if not key.strip():
        raise ConfigError(
            f"--api-key-env {variable}: the variable is not set (export {variable}=...)"
        )
    return key


def serve(
    served: Served,
    *,
    host: str = LOOPBACK,
    port: int = SERVE_PORT,
    engine: Engine = "auto",
    api_key_env: str | None = None,
    limits: ServeLimits = ServeLimits(),
) -> int:
    """Serve until stopped (Ctrl-C or SIGTERM); hands over to vLLM where it can (``engine``)."""
    api_key = read_api_key(api_key_env)
    if api_key is None and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"--host {host} exposes the models to the network: give "
            "--api-key-env VAR too (requests must then carry that key)"
        )
    command = vllm_command(served, host=host, port=port)
    if _use_vllm(engine, command=command):
        if api_key is not None:
            os.environ["VLLM_API_KEY"] = api_key  # vLLM's own way; never on the command line
        print(f"handing over to vLLM: {shlex.join(command)}", flush=True)
        os.execvp(command[0], command)  # noqa: S606 - the documented hand-over
        return 0  # not reached: execvp replaces this process
    from trainers.chat import ChatModel

    print(f"Loading {served.base} with {len(served.adapters)} adapter(s) ...", flush=True)
    chat = ChatModel(served.base, served.adapters, trust_remote_code=served.trust_remote_code)
    from sweeps.serving.serve_app import build_app

    shutdown = threading.Event()
    app = build_app(chat, api_key=api_key, limits=limits, shutdown=shutdown)
    for line in ready_lines(served, host=host, port=port, key_env=api_key_env):
        print(line, flush=True)
    run_until_stopped(app, host=host, port=port, shutdown=shutdown)
    return 0


def run_until_stopped(app: ASGIApp, *, host: str, port: int, shutdown: threading.Event) -> None:
    """uvicorn until SIGTERM or Ctrl-C. The signal sets ``shutdown`` (the answer being generated
    ends at its next token, with a 503), open requests get ``STOP_GRACE`` seconds, and a process
    still held after that (a long prompt's first forward pass cannot be cut) exits anyway."""
    import uvicorn

    class StoppingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not shutdown.is_set():
                shutdown.set()
                print("Stopping: the answer being generated ends now ...", flush=True)
                watchdog = threading.Timer(STOP_GRACE + 2.0, os._exit, args=(1,))
                watchdog.daemon = True
                watchdog.start()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(STOP_GRACE),
    )
    StoppingServer(config).run()


def _use_vllm(engine: Engine, *, command: list[str]) -> bool:
    if engine == "transformers":
        return False
    import torch

    gpu = torch.cuda.is_available()
    found = importlib.util.find_spec("vllm") is not None
    if engine == "vllm" and not (gpu and found):
        why = "no CUDA GPU here" if not gpu else "vLLM is not installed (pip install vllm)"
        raise ConfigError(f"--engine vllm: {why}; on a GPU machine run: {shlex.join(command)}")
    if gpu and not found:
        print(
            f"A GPU is here but vLLM is not: serving with transformers. For vLLM's speed, "
            f"pip install vllm, then: {shlex.join(command)}",
            flush=True,
        )
    return gpu and found


def ready_lines(served: Served, *, host: str, port: int, key_env: str | None) -> list[str]:
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
    key = f'os.environ["{key_env}"]' if key_env else '"unused"'
    first = next(iter(served.adapters), BASE_REF)
    lines = [
        f"Serving {', '.join(served.names)} at {url}  (OpenAI chat completions; Ctrl-C stops it)",
        f"  base model: {served.base}",
        *(f"  {name}: {path}" for name, path in served.adapters.items()),
        f"  auth: Bearer ${key_env}" if key_env else "  auth: none (loopback only)",
        "  try it:",
        f'    from openai import OpenAI; client = OpenAI(base_url="{url}", api_key={key})',
        f'    client.chat.completions.create(model="{first}", messages=[{{"role": "user", '
        '"content": "..."}])',
    ]
    if host not in LOOPBACK_HOSTS:
        lines.append(
            f"  note: listening on {host}: anyone who can reach it and has the key can "
            "use the models"
        )
    return lines
