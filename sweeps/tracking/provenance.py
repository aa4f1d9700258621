"""Where a run came from: git commit and dirty flag, package versions, hardware, seeds, data digests."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "lora-sweep",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "ray",
    "optuna",
    "mlflow",
    "lm-eval",
    "pandas",
    "bitsandbytes",
    "gguf",
)
SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|credential|auth)", re.IGNORECASE
)
SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{20,})$")
URI_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):([^@/\s]+)@")  # scheme://user:PASSWORD@host
HIDDEN = "***"


def git_info(directory: Path) -> dict[str, str]:
    """The commit and dirty flag of the git checkout holding ``directory`` (unknown outside git)."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git.commit": commit, "git.dirty": str(dirty).lower()}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[f"version.{name}"] = "not installed"
    versions["version.python"] = platform.python_version()
    return versions


def hardware() -> dict[str, str]:
    info = {
        "hardware.platform": platform.platform(),
        "hardware.machine": platform.machine(),
        "hardware.cpu_count": str(os.cpu_count()),
        "hardware.memory_gib": f"{_memory_bytes() / 2**30:.1f}",
        "hardware.gpus": "none",
    }
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["hardware.gpus"] = ", ".join(names)
    except ImportError:
        pass
    return info


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def provenance_tags(*, seeds: dict[str, int], digests: dict[str, str]) -> dict[str, str]:
    """Every tag the parent run carries about where the sweep came from."""
    source_dir = Path(__file__).resolve().parent
    tags = {**git_info(source_dir), **package_versions(), **hardware()}
    tags.update({f"seed.{k}": str(v) for k, v in seeds.items()})
    tags.update({f"dataset.{k}.sha256": v for k, v in digests.items()})
    return tags


def is_secret(key: str, value: object) -> bool:
    return bool(SECRET_KEY.search(key)) or (
        isinstance(value, str) and bool(SECRET_VALUE.match(value))
    )


def hide_uri_password(text: str) -> str:
    """``postgresql://bob:***@db/mlflow`` for ``postgresql://bob:hunter2@db/mlflow``."""
    return URI_PASSWORD.sub(rf"\1:{HIDDEN}@", text)


def _shown(value: object) -> object:
    """A config value as logged: a string with any URI password hidden, else the value itself."""
    return hide_uri_password(value) if isinstance(value, str) else value


def param_text(value: float) -> str:
    """A float as a person writes a hyperparameter: 3 significant digits, with an exponent below
    0.01 (``7.65e-05``, ``3.63e-03``, ``0.05``, ``32``)."""
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.3g}"


def flatten(data: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested config -> dotted keys; secret-looking keys and values are left out, and passwords
    in URIs hidden."""
    out: dict[str, object] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if is_secret(key, value):
            continue
        if isinstance(value, dict):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = _shown(value)
    return out


def redacted(data: object, key: str = "") -> object:
    """A copy of a config to show or log: secret-looking values and URI passwords hidden."""
    if isinstance(data, dict):
        return {k: redacted(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redacted(v, key) for v in data]
    return HIDDEN if is_secret(key, data) else _shown(data)
