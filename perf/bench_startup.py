"""How soon a sweep gives its first signal, and how close `sweep validate`'s estimate comes.

    python perf/bench_startup.py [--demo] [--out FILE]

1. **First signal.** Runs `sweep launch` on search_spaces/lora.yaml with 2 trials, twice: first
   with the base model's held-out scores not cached (they are computed beside the trials), then
   with warm caches (the converted model and those scores), three times (the median is shown). From the launch command to the first training step (the earliest trial's
   ``trial/first_step_at``, wall clock) and to the first metric (the first rung on the console);
   stopped with Ctrl-C after that. The baseline, measured in the same run: the trial's own
   startup (``trial/startup_seconds``: its process's imports, data, model and LoRA), the floor
   any orchestration adds to.
2. **`--demo`: the estimate.** `sweep validate search_spaces/lora.yaml` (its estimate, with the
   base scores cached or not as they are), then the whole demo sweep (`sweep launch`), timed.
   The ratio is estimate / measured wall time (target within 0.65-1.35).
3. **`--demo-with-benchmarks`: the estimate with the benchmarks**, alone (no first signal): the
   same, with the benchmark mirror ($LORA_SWEEP_BENCHMARK_MIRROR, else ../shared/benchmarks) and
   a scratch cache holding only the converted model, so the base model's benchmark and held-out
   scores are computed in the run, as on a user's first sweep. About 20 minutes on 2 CPU cores.
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

SWEEP = [sys.executable, "-m", "sweeps.cli.main"]
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
    """`sweep validate`'s estimate for the demo (its dry run, in this process, for the seconds
    the console rounds), then the demo itself from the command line, timed."""
    from sweeps.cli.dry_run import dry_run

    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = dry_run(REPO / "search_spaces/lora.yaml", say=lambda _: None)
    estimate = done.estimate
    started = time.time()
    subprocess.run([*SWEEP, "launch", "search_spaces/lora.yaml"], cwd=REPO,
                   env={**ENV, **os.environ}, check=True, capture_output=True)  # fmt: skip
    wall = time.time() - started
    return {"estimate_s": estimate.wall_seconds, "estimate_lines": estimate.lines(),
            "estimate_line": estimate.lines()[-1],
            "estimate_least_s": estimate.wall_seconds_least,
            "device_hours_estimate": estimate.device_hours, "demo_wall_s": wall,
            "ratio": estimate.wall_seconds / wall,
            "ratio_least": estimate.wall_seconds_least / wall,
            "base_scores_cached": estimate.base_seconds == 0}  # fmt: skip


def estimate_vs_demo_with_benchmarks() -> dict[str, Any]:
    """The demo with the benchmark mirror, from a scratch cache that holds only the converted
    model (and its download): every base-model score is computed in the run."""
    from trainers.models import cache_root

    mirror = os.environ.get("LORA_SWEEP_BENCHMARK_MIRROR") or str(REPO.parent / "shared/benchmarks")
    user_cache, previous = cache_root(), os.environ.get("LORA_SWEEP_CACHE")
    with tempfile.TemporaryDirectory(prefix="bench-demo-cache-") as scratch:
        for kept in ("models", "downloads"):
            if (user_cache / kept).is_dir():
                (Path(scratch) / kept).symlink_to(user_cache / kept)
        os.environ.update(LORA_SWEEP_CACHE=scratch, LORA_SWEEP_BENCHMARK_MIRROR=mirror)
        try:
            began = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            result = estimate_vs_demo()
            ended = time.strftime("%H:%M UTC", time.gmtime())
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                    capture_output=True, text=True).stdout.strip()  # fmt: skip
            return {**result, "mirror": mirror, "measured": f"{began}-{ended}", "commit": commit}
        finally:
            if previous is None:
                os.environ.pop("LORA_SWEEP_CACHE")
            else:
                os.environ["LORA_SWEEP_CACHE"] = previous


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo", action="store_true", help="also time the demo against its estimate"
    )
    parser.add_argument("--warm-runs", type=int, default=3, help="warm runs; the median is shown")
    parser.add_argument(
        "--demo-with-benchmarks", action="store_true",
        help="only time the demo with the benchmark mirror and nothing cached, against its estimate",
    )  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.demo_with_benchmarks:
        return emit(estimate_vs_demo_with_benchmarks(), args.out)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        config = small_yaml(work)
        from trainers.models import cache_root

        shutil.rmtree(cache_root() / "base_scores", ignore_errors=True)
        cold = first_signal(config, work, "cold-base-scores")
        runs = [first_signal(config, work, f"warm-{n}") for n in range(args.warm_runs)]
    median = sorted(runs, key=lambda r: r["launch_to_first_step_s"])[len(runs) // 2]
    result: dict[str, Any] = {"base_scores_not_cached": cold, "warm": median, "warm_runs": runs,
                              "ratio_vs_trial_startup": median["launch_to_first_step_s"]
                              / median["trial_startup_s"]}  # fmt: skip
    if args.demo:
        result["estimate"] = estimate_vs_demo()
    return emit(result, args.out)


if __name__ == "__main__":
    main()
