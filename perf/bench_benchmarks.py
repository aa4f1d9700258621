"""Benchmarks in a sweep: their share of each trial's wall time at the default proxy size, and how
well the proxy ranks the trials compared with the full set.

    python perf/bench_benchmarks.py --mirror ../shared/benchmarks --trials 4 --full-task arc_challenge

A real sweep of the shipped search_spaces/lora.yaml (SmolLM2-135M, the embedded data) with the
four benchmarks on at the default proxy size and no early stopping, so every trial completes.
Trial wall time is Ray's ``time_total_s`` (trainable start to last report); the proxy's seconds
are measured inside the same trial. Then every trial's adapter, and the base model, are scored on
the full set of ``--full-task``, and the proxy's ranking of the trials is compared with the full
set's (Spearman).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402


def sweep_config(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "search_spaces" / "lora.yaml").read_text())
    for split in ("train", "heldout"):
        raw["data"][split] = str((REPO / "search_spaces" / raw["data"][split]).resolve())
    raw["search"].update(num_samples=args.trials, max_concurrent=2)
    raw["scheduler"] = {"type": "none"}
    raw["benchmarks"].update(mirror=str(args.mirror.resolve()), optional=False, finalists=0)
    if args.proxy_size:
        raw["benchmarks"]["proxy_size"] = args.proxy_size
    raw["tracking"] = {"mlflow_uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "perf",
                       "state_dir": str(tmp / "sweeps")}  # fmt: skip
    return dict(raw)


def trial_wall_seconds(state: Any) -> dict[str, float]:
    """Ray's own time_total_s at each trial's last report."""
    seconds = {}
    for path in (state.path / "ray" / "tune").glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            seconds[rows[-1]["trial_id"]] = float(rows[-1]["time_total_s"])
    return seconds


def full_set_scores(
    state: Any, plan: Any, spec: Any, task: str
) -> tuple[dict[str, float], dict[str, float]]:
    """The base model and every completed trial's adapter on ``task``'s full set, and seconds."""
    from peft import PeftModel

    from evals.benchmark_plan import FULL, primary_scores, score_plan
    from sweeps.driver.benchmarking import BaseModel

    plan = replace(plan, tasks=[task])
    model, tokenizer = BaseModel(spec)()
    base, base_seconds = score_plan(model, tokenizer, plan, phase=FULL)
    scores = {"base": primary_scores(base, plan)[task]}
    seconds = {"base": base_seconds}
    for record in state.trials.values():
        if record.status != "completed" or not record.adapter_path:
            continue
        tuned = PeftModel.from_pretrained(model, record.adapter_path).eval()
        full, seconds[record.trial_id] = score_plan(tuned, tokenizer, plan, phase=FULL)
        scores[record.trial_id] = primary_scores(full, plan)[task]
        model = tuned.unload()
    return scores, seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--proxy-size", type=int, help="default: the shipped YAML's")
    parser.add_argument("--full-task", default="arc_challenge")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import pandas as pd
    from rich.console import Console

    from evals.objective import PRIMARY_METRICS
    from sweeps import launch_sweep
    from sweeps.config import config_from_dict
    from sweeps.driver.preflight import coerce_config, preflight

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw = sweep_config(args, tmp)
        started = time.perf_counter()
        state = launch_sweep(raw, console=Console(file=io.StringIO()))
        sweep_seconds = time.perf_counter() - started
        walls = trial_wall_seconds(state)
        config, _, config_dir = coerce_config(config_from_dict(raw))
        plan = preflight(config, config_path=None, config_dir=config_dir, progress=lambda _: None)
        full, full_seconds = full_set_scores(state, plan.spec.benchmarks, plan.spec, args.full_task)
    metric = PRIMARY_METRICS.get(args.full_task, "acc")
    trials = []
    for record in state.trials.values():
        if record.status != "completed":
            continue
        m = record.metrics
        trials.append({
            "trial": record.trial_id, "wall_s": walls[record.trial_id],
            "proxy_s": m["bench/proxy/seconds"],
            "share": m["bench/proxy/seconds"] / walls[record.trial_id],
            "proxy": m[f"bench/proxy/{args.full_task}/{metric}"],
            "proxy_stderr": m.get(f"bench/proxy/{args.full_task}/{metric}_stderr"),
            "full": full[record.trial_id],
            "full_s": full_seconds[record.trial_id],
            "proxy_task_s": {t: m.get(f"bench/proxy/{t}/seconds")
                             for t in raw["benchmarks"]["tasks"]},
            **{f"proxy_{t}": m.get(f"bench/proxy/{t}/{PRIMARY_METRICS.get(t, 'acc')}")
               for t in raw["benchmarks"]["tasks"]},
        })  # fmt: skip
    frame = pd.DataFrame(trials)
    spearman = float(frame["proxy"].corr(frame["full"], method="spearman"))
    result = {
        "settings": {"trials": args.trials, "tasks": raw["benchmarks"]["tasks"],
                     "proxy_size": raw["benchmarks"]["proxy_size"], "full_task": args.full_task,
                     "metric": metric, "mirror": str(args.mirror)},
        "sweep_seconds": sweep_seconds, "trials": trials, "base_full": full["base"],
        "mean_share": float(frame["share"].mean()), "max_share": float(frame["share"].max()),
        "spearman_proxy_vs_full": spearman,
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    main()
