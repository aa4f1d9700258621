"""How soon a sweep gives its first signal, and how close `sweep validate`'s estimate comes.

    python perf/bench_startup.py [--demo] [--out FILE]

1. **First signal.** Runs `sweep launch` on search_spaces/lora.yaml with 2 trials, twice: first
   with the base model's held-out scores not cached (they are computed beside the trials), then
   with warm caches (the converted model and those scores). From the launch command to the first training step (the earliest trial's
   ``trial/first_step_at``, wall clock) and to the first metric (the first rung on the console);
   stopped with Ctrl-C after that. The baseline, measured in the same run: the trial's own
   startup (``trial/startup_seconds``: its process's imports, data, model and LoRA), the floor
   any orchestration adds to.
2. **`--demo`: the estimate.** `sweep validate search_spaces/lora.yaml` (its estimate, with the
   base scores cached or not as they are), then the whole demo sweep (`sweep launch`), timed.
   The ratio is estimate / measured wall time (target within 0.65-1.35).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402

SWEEP = [sys.executable, "-m", "sweeps.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def small_yaml(work: Path) -> Path:
    """search_spaces/lora.yaml with 2 trials of one epoch, its state and MLflow under ``work``."""
    text = (REPO / "search_spaces/lora.yaml").read_text()
    text = text.replace("../data/", f"{REPO}/data/").replace("num_samples: 6", "num_samples: 2")
    text = re.sub(r"num_epochs: \{[^}]*\}", "num_epochs: 1", text)
    text = text.replace("mlflow_uri: sqlite:///mlruns/mlflow.db",
                        f"mlflow_uri: sqlite:///{work}/mlflow.db\n  state_dir: {work}/sweeps")  # fmt: skip
    path = work / "startup.yaml"
    path.write_text(text)
    return path


def first_signal(config: Path, work: Path, name: str) -> dict[str, float]:
    """Launch, wait for the first rung on the console, Ctrl-C; the seconds to each signal."""
    started = time.time()
    process = subprocess.Popen([*SWEEP, "launch", str(config), "--name", name], cwd=REPO, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    first_metric = None
    assert process.stdout is not None
    for line in process.stdout:
        if " rung 1: " in line and first_metric is None:
            first_metric = time.time() - started
            os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=600)
    state = json.loads((work / "sweeps" / name / "state.json").read_text())
    reported = [
        t["metrics"] for t in state["trials"].values() if "trial/first_step_at" in t["metrics"]
    ]
    first = min(reported, key=lambda m: m["trial/first_step_at"])
    return {"launch_to_first_step_s": first["trial/first_step_at"] - started,
            "launch_to_first_metric_s": float(first_metric or "nan"),
            "trial_startup_s": first["trial/startup_seconds"]}  # fmt: skip


def estimate_vs_demo() -> dict[str, Any]:
    """`sweep validate`'s estimate for the demo, then the demo itself, timed."""
    done = subprocess.run([*SWEEP, "validate", "search_spaces/lora.yaml"], cwd=REPO, env=ENV,
                          capture_output=True, text=True, check=True)  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if "estimated wall time:" in x)
    estimate = _seconds(line.split("estimated wall time:", 1)[1].split("(")[0])
    cached = "Base model held-out scores: cached." not in done.stdout  # validate says nothing
    started = time.time()
    subprocess.run([*SWEEP, "launch", "search_spaces/lora.yaml"], cwd=REPO, env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    wall = time.time() - started
    return {"estimate_s": estimate, "estimate_line": line.strip(), "demo_wall_s": wall,
            "ratio": estimate / wall, "base_scores_cached": cached}  # fmt: skip


def _seconds(text: str) -> float:
    value, unit = text.split()
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo", action="store_true", help="also time the demo against its estimate"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        config = small_yaml(work)
        from trainers.models import cache_root

        shutil.rmtree(cache_root() / "base_scores", ignore_errors=True)
        cold = first_signal(config, work, "cold-base-scores")
        measured = first_signal(config, work, "measured")
    result: dict[str, Any] = {"base_scores_not_cached": cold, "warm": measured,
                              "ratio_vs_trial_startup": measured["launch_to_first_step_s"]
                              / measured["trial_startup_s"]}  # fmt: skip
    if args.demo:
        result["estimate"] = estimate_vs_demo()
    return emit(result, args.out)


if __name__ == "__main__":
    main()
