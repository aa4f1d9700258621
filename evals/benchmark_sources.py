"""Where benchmark documents come from, decided without lm-eval: the local mirror (its
directory, from the config or ``$LORA_SWEEP_BENCHMARK_MIRROR``, and the files it holds per task
and split), whether the Hugging Face Hub answers, and why a task's data cannot be had, in one
line with its fix; ``BenchmarkError``, the one-line benchmark problem."""

from __future__ import annotations

import os
from pathlib import Path

MIRROR_ENV = "LORA_SWEEP_BENCHMARK_MIRROR"
# task -> {split: candidate file names in the mirror, first found wins}
MIRROR_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "arc_challenge": {
        "train": ("arc_challenge_train.jsonl",),
        "validation": ("arc_challenge_validation.jsonl",),
        "test": ("arc_challenge_test.jsonl",),
    },
    "truthfulqa_mc1": {"validation": ("truthfulqa_mc_validation.jsonl",)},
    "truthfulqa_mc2": {"validation": ("truthfulqa_mc_validation.jsonl",)},
    "hellaswag": {
        "train": ("hellaswag_train.jsonl",),
        "validation": ("hellaswag_validation.jsonl", "hellaswag_validation_DERIVED_lossy.jsonl"),
    },
}
MMLU_SPLITS = {
    "test": "mmlu_test.jsonl",
    "dev": "mmlu_dev.jsonl",
    "validation": "mmlu_validation.jsonl",
}


class BenchmarkError(ValueError):
    """A benchmark that cannot be run, phrased as one line that says how to fix it."""


def mirror_directory(configured: str | Path | None = None) -> Path | None:
    """The local mirror: from the config, else ``$LORA_SWEEP_BENCHMARK_MIRROR``, else none."""
    value = configured or os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise BenchmarkError(
            f"benchmark mirror {path} is not a directory (set by config or ${MIRROR_ENV})"
        )
    return path


def known_offline_skips(tasks: list[str], mirror: Path | None) -> dict[str, str] | None:
    """Why each task is skipped when the answer needs no lm-eval: the Hub is offline or does not
    answer, no mirror is set, and every task is one whose data we know lives only there (None
    otherwise: ask lm-eval). Importing lm-eval and its task index costs seconds a launch would
    wait for, and a Hub that does not answer would cost each dataset its network time-outs."""
    if mirror is not None or not set(tasks) <= {*MIRROR_FILES, "mmlu"}:
        return None
    why = hub_unavailable()
    if why is None:
        return None
    fix = (
        f"set ${MIRROR_ENV} or benchmarks.mirror to a directory of Hugging Face-schema jsonl files"
    )
    return {t: f"{t}: {why} and no local mirror is set; {fix}" for t in tasks}


def hub_offline() -> bool:
    flags = (os.environ.get(k, "0").lower() for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag not in ("0", "", "false", "no") for flag in flags)


def _hub_address() -> tuple[str, int]:
    """Host and port of the Hub the datasets come from ($HF_ENDPOINT, e.g. a mirror, or the Hub)."""
    from urllib.parse import urlsplit

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return endpoint.hostname or "huggingface.co", endpoint.port or (
        80 if endpoint.scheme == "http" else 443
    )


HUB_ADDRESS: tuple[str, int] | None = None  # None: from $HF_ENDPOINT (tests point it elsewhere)
HUB_PROBE_SECONDS = 3.0


def hub_unavailable(*, timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the Hugging Face Hub cannot serve benchmark data (None: it answers): flagged offline,
    or no connection to it within ``timeout`` seconds, name lookup included."""
    if hub_offline():
        return "the Hugging Face Hub is offline"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # only the proxy can say: lm-eval asks through it
    import socket
    import threading

    answered: list[bool] = []
    address = HUB_ADDRESS or _hub_address()

    def probe() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no time-out of its own
    thread.start()
    thread.join(timeout)
    if answered and answered[0]:
        return None
    host, port = address
    return f"the Hugging Face Hub does not answer ({host}:{port} within {timeout:g} s)"


def unavailable_reason(task: str, error: Exception, mirror: Path | None) -> str:
    """Why a task's data cannot be had, and how to fix it, in one line."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    where = f"the mirror {mirror} has no files for it" if mirror else "no local mirror is set"
    fix = (
        f"set ${MIRROR_ENV} or benchmarks.mirror to a directory of Hugging Face-schema jsonl files"
    )
    if hub_offline():
        return f"{task}: the Hugging Face Hub is offline and {where} ({first}); {fix}"
    return f"{task}: its data could not be loaded ({type(error).__name__}: {first}); {fix}, or check the network"
