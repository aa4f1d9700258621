"""Search efficiency: replay every search method on the table of real LoRA learning curves.

    python perf/bench_search.py --seeds 25 --out /tmp/search.json
    python perf/run_all.py --merge search /tmp/search.json   # docs/perf.md "Search efficiency"

The table (perf/lora_curves.csv, made by perf/make_lora_curves.py) holds every rung of 48
configurations of SmolLM2-135M trained for real. Each method is the sweep's own searcher and
scheduler (sweeps/tune/replay.py: PruneAwareOptunaSearch with the configured Optuna sampler, Ray
Tune's ASHA), run on 2 slots as the demo runs; a trial reads its rungs from the table, and time
is the seconds recorded for them.

Per seed, random search with 16 trials and no early stopping (random-16) sets the bar: its
final best and the compute it spent. For every method we report the compute it needed to reach
that best (as a fraction of random-16's), and the best it found within random-16's compute.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402

TABLE = REPO / "perf" / "lora_curves.csv"
PLOT = REPO / "docs" / "search_regret.png"
METRIC = "heldout/field_f1"
KNOBS = ("learning_rate", "lora_target_modules", "lora_r", "gradient_accumulation_steps")
# name: (search.algorithm, ASHA's grace period in rungs or None for no early stopping, trials)
METHODS: dict[str, tuple[str, int | None, int]] = {
    "random-16": ("random", None, 16),
    "grid": ("grid", None, 48),
    "random+ASHA": ("random", 1, 64),
    "tpe": ("tpe", None, 48),
    "tpe+ASHA": ("tpe", 1, 64),
    "tpe+ASHA, grace 2": ("tpe", 2, 64),
    "gp+ASHA": ("gp", 1, 48),
    "cmaes+ASHA": ("cmaes", 1, 64),
    "qmc+ASHA": ("qmc", 1, 64),
    "motpe+MO-ASHA": ("tpe", 1, 64),
}
# multi-objective: field-F1 (max) and the trial's device-seconds (min), MO-ASHA stopping; its
# compute to reach random-16's best is on field-F1, the others' objective
MULTI_OBJECTIVE = {"motpe+MO-ASHA"}


def load_table(path: Path) -> tuple[dict[tuple[Any, ...], Any], dict[str, list[Any]]]:
    """Each configuration's curve, keyed by KNOBS' values, and each knob's values in the table."""
    from sweeps.tune.replay import Curve

    rows: dict[tuple[Any, ...], list[dict[str, str]]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            key = (float(row["learning_rate"]), row["target_modules"], int(row["lora_r"]),
                   int(row["gradient_accumulation_steps"]))  # fmt: skip
            rows.setdefault(key, []).append(row)
    curves = {}
    for key, rungs in rows.items():
        rungs.sort(key=lambda r: int(r["rung"]))
        curves[key] = Curve(tuple(float(r["heldout_field_f1"]) for r in rungs),
                            tuple(float(r["wall_seconds"]) for r in rungs))  # fmt: skip
    values = {knob: sorted({key[i] for key in curves}, key=str if i == 1 else float)
              for i, knob in enumerate(KNOBS)}  # fmt: skip
    return curves, values


class Lookup:
    """A trial's curve: its learning rate snapped to the nearest in the table (log scale)."""

    def __init__(self, curves: dict[tuple[Any, ...], Any], rates: list[float]) -> None:
        self.curves, self.rates = curves, rates

    def __call__(self, params: Mapping[str, object]) -> Any:
        lr = float(str(params["learning_rate"]))
        nearest = min(self.rates, key=lambda r: abs(math.log(r) - math.log(lr)))
        return self.curves[(nearest, str(params["lora_target_modules"]),
                            int(str(params["lora_r"])),
                            int(str(params["gradient_accumulation_steps"])))]  # fmt: skip


def method_config(algorithm: str, *, grace: int | None, trials: int, seed: int,
                  values: dict[str, list[Any]], rungs: int) -> Any:  # fmt: skip
    from sweeps.config import config_from_dict

    rates = values["learning_rate"]
    learning_rate: Any = (list(rates) if algorithm == "grid" else
                          {"type": "loguniform", "low": min(rates), "high": max(rates)})  # fmt: skip
    return config_from_dict({
        "name": "replay", "base_model": "smollm2-135m-instruct",
        "data": {"train": "train.jsonl"},
        "search_space": {
            "learning_rate": learning_rate, "lora_r": values["lora_r"],
            "lora_alpha": {"type": "ratio_of_r", "values": [2]}, "num_epochs": rungs,
            "sequence_len": 256, "lora_target_modules": values["lora_target_modules"],
            "gradient_accumulation_steps": values["gradient_accumulation_steps"],
        },
        "training": {"evals_per_epoch": 1},
        "search": {"algorithm": algorithm, "num_samples": trials, "max_concurrent": 2,
                   "seed": seed},
        "scheduler": {"type": "asha", "grace_period": grace, "reduction_factor": 2}
        if grace else {"type": "none"},
    })  # fmt: skip


def run_method(name: str, *, seed: int, lookup: Lookup, values: dict[str, list[Any]],
               rungs: int) -> Any:  # fmt: skip
    from sweeps.tune.replay import replay_search

    algorithm, grace, trials = METHODS[name]
    config = method_config(algorithm, grace=grace, trials=trials, seed=seed, values=values,
                           rungs=rungs)  # fmt: skip
    from sweeps.search.pareto import Goal

    also = [Goal("cost/device_seconds", "min")] if name in MULTI_OBJECTIVE else []
    return replay_search(config, lookup, metric=METRIC, mode="max", trials=trials, rungs=rungs,
                         also=also)  # fmt: skip


def quantile(values: list[float], q: float) -> float:
    """The q-quantile, interpolated between neighbours; inf where a neighbour is inf (a seed
    that never reached the bar)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    if math.isinf(low) or math.isinf(high):
        return math.inf
    return low + (high - low) * (position - math.floor(position))


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = (quantile(values, q) for q in (0.25, 0.5, 0.75))
    return q1, median, q3


def summarize(name: str, fractions: list[float], bests: list[float], pruned: list[float],
              trials: list[float], seconds: float) -> dict[str, Any]:  # fmt: skip
    reached = [f for f in fractions if math.isfinite(f)]
    q1, median, q3 = quartiles(fractions)
    b1, best, b3 = quartiles(bests)
    return {"method": name, "compute_fraction_median": median, "compute_fraction_q1": q1,
            "compute_fraction_q3": q3, "reached": len(reached), "seeds": len(fractions),
            "best_at_equal_compute_median": best, "best_at_equal_compute_q1": b1,
            "best_at_equal_compute_q3": b3, "trials_mean": statistics.mean(trials),
            "pruned_fraction_mean": statistics.mean(pruned), "replay_seconds": seconds}  # fmt: skip


def factor_effects(curves: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
    """What each knob does on the table: per value, the median and best final value; and for
    each knob with two values, how often the second beats the first when all else is equal."""
    effects: dict[str, Any] = {}
    for index, knob in enumerate(KNOBS):
        levels = sorted({key[index] for key in curves}, key=str if index == 1 else float)
        per_level = {str(level): {"median": statistics.median(c.values[-1] for k, c in
                                                             curves.items() if k[index] == level),
                                  "best": max(c.values[-1] for k, c in curves.items()
                                              if k[index] == level)} for level in levels}  # fmt: skip
        effects[knob] = {"levels": per_level}
        if len(levels) == 2:
            pairs = [(curves[k].values[-1], curves[(*k[:index], levels[1], *k[index + 1:])]
                      .values[-1]) for k in curves if k[index] == levels[0]]  # fmt: skip
            effects[knob]["paired"] = {
                "first": str(levels[0]), "second": str(levels[1]), "pairs": len(pairs),
                "second_better": sum(b > a + 0.02 for a, b in pairs),
                "first_better": sum(a > b + 0.02 for a, b in pairs),
                "median_difference": statistics.median(b - a for a, b in pairs),
            }  # fmt: skip
    return effects


def late_bloomers(curves: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
    """The configurations within 0.02 of the table's best final value, and how many of them sit
    in the bottom half at the first rung, where ASHA with grace 1 stops half the trials."""
    top = max(c.values[-1] for c in curves.values())
    first = statistics.median(c.values[0] for c in curves.values())
    near = [key for key, c in curves.items() if c.values[-1] >= top - 0.02]
    late = [key for key in near if curves[key].values[0] < first]
    return {"near_best": len(near), "below_median_at_rung_1": len(late),
            "median_at_rung_1": first, "configurations": [list(k) for k in late]}  # fmt: skip


def regret_curves(traces: dict[str, list[Any]], bars: list[float], top: float,
                  points: int = 60) -> dict[str, Any]:  # fmt: skip
    """Median regret (the table's best minus the best found) against compute, as a fraction of
    each seed's random-16 compute."""
    grid = [2.0 * i / (points - 1) for i in range(points)]
    curves = {}
    for name, runs in traces.items():
        median = []
        for x in grid:
            found = [t.best_within(x * bar) for t, bar in zip(runs, bars, strict=True)]
            median.append(statistics.median(top - (f if f is not None else 0.0) for f in found))
        curves[name] = median
    return {"compute_fraction": grid, "median_regret": curves}


def plot(regret: dict[str, Any], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in regret["median_regret"].items():
        style = "--" if name in ("random-16", "grid") else "-"
        ax.plot(regret["compute_fraction"], values, style, label=name)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_ylim(0, 0.12)  # before a first trial ends, the regret is the whole best (off the top)
    ax.set_xlabel("compute, as a fraction of random-16's (1.0: random-16's whole budget)")
    ax.set_ylabel("median regret (field-F1 below the table's best)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shown(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=25)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    curves, values = load_table(args.table)
    expected = math.prod(len(v) for v in values.values())
    if len(curves) != expected:
        raise SystemExit(f"{args.table}: {len(curves)} configurations, but its knobs' values "
                         f"make {expected}: finish it with perf/make_lora_curves.py")  # fmt: skip
    rungs = max(len(c.values) for c in curves.values())
    lookup = Lookup(curves, values["learning_rate"])
    top = max(max(c.values[-1] for c in curves.values()), 0.0)
    traces: dict[str, list[Any]] = {name: [] for name in METHODS}
    seconds = dict.fromkeys(METHODS, 0.0)
    for seed in range(args.seeds):
        for name in METHODS:
            started = time.perf_counter()
            traces[name].append(run_method(name, seed=seed, lookup=lookup, values=values,
                                           rungs=rungs))  # fmt: skip
            seconds[name] += time.perf_counter() - started
        print(f"seed {seed}: " + ", ".join(f"{n} {traces[n][-1].best[-1]:.3f}" for n in METHODS),
              file=sys.stderr, flush=True)  # fmt: skip
    bars = [t.total_compute for t in traces["random-16"]]
    targets = [t.best[-1] for t in traces["random-16"]]
    rows = []
    for name, runs in traces.items():
        fractions = [(t.compute_to_reach(target) or math.inf) / bar
                     for t, target, bar in zip(runs, targets, bars, strict=True)]  # fmt: skip
        bests = [t.best_within(bar) or 0.0 for t, bar in zip(runs, bars, strict=True)]
        pruned = [sum(e.pruned for e in t.ended) / len(t.ended) for t in runs]
        rows.append(summarize(name, fractions, bests, pruned, [len(t.ended) for t in runs],
                              seconds[name]))  # fmt: skip
    regret = regret_curves(traces, bars, top)
    plot(
        regret,
        args.plot,
        title=f"Search on {len(curves)} recorded SmolLM2 LoRA curves ({args.seeds} seeds)",
    )
    finals = sorted(c.values[-1] for c in curves.values())
    result = {
        "settings": {"seeds": args.seeds, "table": _shown(args.table),
                     "configurations": len(curves), "rungs": rungs, "max_concurrent": 2,
                     "methods": {k: list(v) for k, v in METHODS.items()}},
        "table": {"best": top, "median_final": statistics.median(finals),
                  "worst_quartile_final": quartiles(finals)[0],
                  "near_best": sum(f >= top - 0.03 for f in finals),
                  "random16_compute_median_s": statistics.median(bars),
                  "random16_best_median": statistics.median(targets)},
        "methods": rows,
        "regret": regret,
        "late_bloomers": late_bloomers(curves),
        "factors": factor_effects(curves),
        "tpe_asha_compute_fraction": next(r["compute_fraction_median"] for r in rows
                                          if r["method"] == "tpe+ASHA"),
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    main()
