"""Orchestration overhead: sweep wall time / (sum of trial times / concurrency), on 8 trials.

    python perf/bench_orchestration.py --trials 8

Runs, in one process one after the other, (1) our full sweep (Optuna + MLflow + state + live table,
checkpoints every rung) and (2) a bare Ray Tune loop: the same trainable, random search, no
MLflow, no callbacks. Trial time is Ray's own ``time_total_s`` of each trial's last result (from
trainable start to its last report, measured in the worker). Both use the real SmolLM2 model on a
small slice of the embedded data, so a trial takes tens of seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import embedded_slice, emit  # noqa: E402


def small_config(work: Path, *, trials: int, concurrency: int, train_rows: int) -> dict[str, Any]:
    data = embedded_slice(work, train_rows=train_rows, heldout_rows=8)
    return {
        "name": "perf",
        "base_model": "smollm2-135m-instruct",
        # a few rows: the trials, not the data, are measured
        "data": {**data, "allow_small": True},
        "search_space": {
            "learning_rate": {"type": "loguniform", "low": 3e-4, "high": 3e-3},
            "lora_r": [4, 8],
            "lora_alpha": {"type": "ratio_of_r", "values": [2]},
            "num_epochs": 1,
            "sequence_len": [256],
        },
        "training": {"micro_batch_size": 4, "evals_per_epoch": 1},
        "search": {"algorithm": "random", "num_samples": trials, "max_concurrent": concurrency},
        "scheduler": {"type": "none"},
        "resources": {"cpu": 1},
        "tracking": {
            "mlflow_uri": f"sqlite:///{work / 'mlruns.db'}",
            "state_dir": str(work / "sweeps"),
        },
        "evaluation": {"max_new_tokens": 40, "batch_size": 8, "generation_samples": 8},
    }


def trial_seconds(ray_dir: Path) -> list[float]:
    totals = []
    for path in ray_dir.glob("*/result.json"):
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        totals.append(float(lines[-1]["time_total_s"]))
    return totals


def ours(config: dict[str, Any], work: Path, concurrency: int) -> dict[str, float]:
    from rich.console import Console

    from sweeps import launch_sweep
    from sweeps.driver.base_scores import base_scores
    from sweeps.driver.preflight import coerce_config, preflight

    loaded, _, cwd = coerce_config(config)
    base_scores(preflight(loaded, config_path=None, config_dir=cwd))  # cached: not part of the loop
    started = time.perf_counter()  # includes ray.init, like the bare loop below
    with open("/dev/null", "w") as sink:
        state = launch_sweep(
            config, name="perf-ours", num_cpus=concurrency, console=Console(file=sink)
        )
    wall = time.perf_counter() - started
    return summarize(wall, trial_seconds(state.path / "ray" / "tune"), concurrency)


def bare(config: dict[str, Any], work: Path, concurrency: int) -> dict[str, float]:
    """A bare Ray Tune loop: same trainable and resources; random search; nothing else."""
    from ray import tune

    from sweeps.driver.preflight import coerce_config, preflight
    from sweeps.tune import start_ray, stop_ray
    from sweeps.tune.trainable import lora_trainable

    loaded, _, cwd = coerce_config(config)
    plan = preflight(loaded, config_path=None, config_dir=cwd)
    space = {
        "learning_rate": tune.loguniform(3e-4, 3e-3),
        "lora_r": tune.choice([4, 8]),
        "lora_alpha": 16,
        "num_epochs": 1,
        "sequence_len": 256,
        "lora_dropout": 0.05,
        "weight_decay": 0.0,
        "warmup_ratio": 0.1,
    }
    started = time.perf_counter()
    start_ray(address=None, num_cpus=concurrency, num_gpus=None)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(lora_trainable, spec=plan.spec), {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            num_samples=config["search"]["num_samples"],
            max_concurrent_trials=concurrency,
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(name="bare", storage_path=str(work / "bare"), verbose=0),
    )
    tuner.fit()
    wall = time.perf_counter() - started
    stop_ray()
    return summarize(wall, trial_seconds(work / "bare" / "bare"), concurrency)


def summarize(wall: float, trials: list[float], concurrency: int) -> dict[str, float]:
    ideal = sum(trials) / concurrency
    return {
        "wall_seconds": wall,
        "trials": len(trials),
        "sum_trial_seconds": sum(trials),
        "ideal_seconds": ideal,
        "overhead_ratio": wall / ideal,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="perf-orch-"))
    try:
        config = small_config(
            work, trials=args.trials, concurrency=args.concurrency, train_rows=args.train_rows
        )
        result: dict[str, Any] = {
            "ours": ours(config, work, args.concurrency),
            "bare_ray_tune": bare(config, work, args.concurrency),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["ours_wall_vs_bare_wall"] = (
        result["ours"]["wall_seconds"] / result["bare_ray_tune"]["wall_seconds"]
    )
    result["settings"] = vars(args) | {"out": str(args.out)}
    return emit(result, args.out)


if __name__ == "__main__":
    main()
