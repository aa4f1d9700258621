"""Does the table predict reality? Two real sweeps beside their replays on the curve table.

    python perf/confirm_search.py --trials 8 --out /tmp/confirm.json      # ~25 min on 2 cores
    python perf/run_all.py --merge search_confirm /tmp/confirm.json

perf/bench_search.py replays searches on perf/lora_curves.csv. Here the same pairing runs for
real, as a user runs it: ``sweeps.launch_sweep`` (Ray Tune, Optuna, MLflow) on SmolLM2-135M, on
the data, trainer settings, rungs and two slots the table was made with:

- random search with ``--trials`` trials and no early stopping;
- TPE with ASHA (grace 1, reduction factor 2), the same number of trials.

The learning rate is a choice of the table's six values here (bench_search samples it
log-uniformly and snaps it), so every real trial has a row in the table to be compared with.

Reported: each sweep's best field-F1 and compute (device-seconds) beside what the replay of the
same config and seed predicts; the compute TPE+ASHA needed to reach random's best, both ways; and
for every real trial, its field-F1 at the rung it ended against the table's value for the same
configuration and rung (the random sweep draws the same configurations in both, its sampler
being seeded and blind to results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402
from bench_search import TABLE, Lookup, load_table  # noqa: E402
from make_lora_curves import sweep_yaml  # noqa: E402

METRIC = "heldout/field_f1"
PAIR = {"random": ("random", None), "tpe+ASHA": ("tpe", 1)}  # name: (algorithm, ASHA's grace)


def pair_config(algorithm: str, *, grace: int | None, trials: int, seed: int,
                values: dict[str, list[Any]], rungs: int) -> dict[str, Any]:  # fmt: skip
    """The search as both the real sweep and its replay run it."""
    return {
        "search_space": {
            "learning_rate": list(values["learning_rate"]), "lora_r": values["lora_r"],
            "lora_alpha": {"type": "ratio_of_r", "values": [2]}, "num_epochs": rungs,
            "sequence_len": [256], "lora_target_modules": values["lora_target_modules"],
            "gradient_accumulation_steps": values["gradient_accumulation_steps"],
        },
        "search": {"algorithm": algorithm, "num_samples": trials, "max_concurrent": 2,
                   "seed": seed},
        "scheduler": {"type": "asha", "grace_period": grace, "reduction_factor": 2}
        if grace else {"type": "none"},
    }  # fmt: skip


def real_sweep(name: str, search: dict[str, Any], *, work: Path) -> dict[str, Any]:
    """Launch the sweep for real; each trial's knobs, end, last field-F1 and device-seconds."""
    from sweeps import launch_sweep

    raw = sweep_yaml(work, train_rows=48, heldout_rows=20)
    raw["training"] = {**raw["training"], "micro_batch_size": 4}
    raw.update(search, name=name)
    started = time.perf_counter()
    state = launch_sweep(raw, name=name, num_cpus=2)
    trials = []
    for record in sorted(state.trials.values(), key=lambda t: t.trial_id):
        trials.append({
            "params": {k: record.params[k] for k in ("learning_rate", "lora_target_modules",
                                                     "lora_r", "gradient_accumulation_steps")},
            "status": record.status, "rungs": record.rungs,
            "field_f1": record.metrics.get(METRIC),
            "device_seconds": record.metrics.get("cost/device_seconds", 0.0),
        })  # fmt: skip
    return {"trials": trials, "wall_seconds": round(time.perf_counter() - started, 1)}


def best(trials: list[dict[str, Any]]) -> float | None:
    done = [
        t["field_f1"] for t in trials if t["status"] == "completed" and t["field_f1"] is not None
    ]
    return max(done) if done else None


def replayed(name: str, config: dict[str, Any], lookup: Lookup, *, trials: int, rungs: int) -> Any:
    from sweeps.config import config_from_dict
    from sweeps.tune.replay import replay_search

    full = config_from_dict({"data": {"train": "train.jsonl"}, "training": {"evals_per_epoch": 1},
                             **config})  # fmt: skip
    return replay_search(full, lookup, metric=METRIC, mode="max", trials=trials, rungs=rungs)


def table_agreement(real: list[dict[str, Any]], lookup: Lookup) -> dict[str, Any]:
    """Each real trial's field-F1 at the rung it ended against the table's at that rung."""
    pairs = []
    for trial in real:
        if trial["field_f1"] is None or trial["rungs"] < 1:
            continue
        curve = lookup(trial["params"])
        pairs.append((trial["field_f1"], curve.values[trial["rungs"] - 1]))
    if len(pairs) < 3:
        return {"pairs": len(pairs)}
    import pandas as pd

    frame = pd.DataFrame(pairs, columns=["real", "table"])
    return {"pairs": len(pairs),
            "mean_absolute_difference": round(float((frame.real - frame.table).abs().mean()), 4),
            "spearman": round(float(frame.real.corr(frame.table, method="spearman")), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    curves, values = load_table(TABLE)
    lookup = Lookup(curves, values["learning_rate"])
    rungs = max(len(c.values) for c in curves.values())
    results: dict[str, Any] = {"settings": {"trials": args.trials, "seed": args.seed,
                                            "rungs": rungs, "slots": 2}}  # fmt: skip
    for name, (algorithm, grace) in PAIR.items():
        config = pair_config(algorithm, grace=grace, trials=args.trials, seed=args.seed,
                             values=values, rungs=rungs)  # fmt: skip
        trace = replayed(name, config, lookup, trials=args.trials, rungs=rungs)
        with tempfile.TemporaryDirectory() as tmp:
            real = real_sweep(name.replace("+", "-").lower(), config, work=Path(tmp))
        results[name] = {
            "real": {**real, "best": best(real["trials"]),
                     "compute": round(sum(t["device_seconds"] for t in real["trials"]), 1)},
            "replay": {"best": max((e.value for e in trace.ended if not e.pruned), default=None),
                       "compute": round(trace.total_compute, 1),
                       "pruned": sum(e.pruned for e in trace.ended)},
            "table_agreement": table_agreement(real["trials"], lookup),
        }  # fmt: skip
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "real"}}),
              flush=True)  # fmt: skip
    results["summary"] = summary(results)
    print(results["summary"])
    emit(results, args.out)


def summary(r: dict[str, Any]) -> str:
    random, tpe = r["random"], r["tpe+ASHA"]
    agree = [x["table_agreement"] for x in (random, tpe) if "spearman" in x["table_agreement"]]
    lines = [
        f"**Real-training confirmation** (perf/confirm_search.py; {r['settings']['trials']} "
        f"trials each, seed {r['settings']['seed']}, two slots, real sweeps via launch_sweep):",
        "",
        "| | best field-F1, real | predicted by the table | compute (device-s), real | predicted |",
        "|---|---|---|---|---|",
    ]
    for name in PAIR:
        real, replay = r[name]["real"], r[name]["replay"]
        lines.append(f"| {name} | {_f(real['best'])} | {_f(replay['best'])} | "
                     f"{real['compute']:.0f} | {replay['compute']:.0f} |")  # fmt: skip
    fraction = _ratio(tpe["real"]["compute"], random["real"]["compute"])
    predicted = _ratio(tpe["replay"]["compute"], random["replay"]["compute"])
    lines += ["", f"TPE+ASHA spent {fraction} of random's compute for real ({predicted} "
              "predicted)" + (f"; per trial, the table's field-F1 for the same configuration and "
              f"rung has a Spearman correlation of "
              f"{statistics.mean(a['spearman'] for a in agree):.2f} with the real one (mean "
              f"absolute difference "
              f"{statistics.mean(a['mean_absolute_difference'] for a in agree):.3f})"
              if agree else "") + "."]  # fmt: skip
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ratio(a: float, b: float) -> str:
    return "-" if not b else f"{a / b:.2f}"


if __name__ == "__main__":
    main()
