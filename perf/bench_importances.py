"""How many trials hyperparameter importances need: fANOVA on random subsets of real LoRA trials.

    python perf/bench_importances.py --repeats 100 --out /tmp/importances.json
    python perf/run_all.py --merge importances /tmp/importances.json  # docs/perf.md (k)

The table (perf/lora_curves.csv) holds the final held-out field-F1 of 48 configurations of
SmolLM2-135M trained for real, over four knobs (learning rate, target modules, rank, gradient
accumulation). The reference is Optuna's fANOVA (the evaluator the sweep's picture uses, seed 0)
on all 48. For each subset size n, ``--repeats`` random subsets of n configurations (each drawn
as a sweep of n random trials would be) are scored the same way; we report how often the subset
names the reference's most important knob, and the mean absolute error of the importances.

What it cannot show: four knobs and one task; a sweep's trials are not uniform draws once TPE
steers them (they cluster near the best, which spreads the objective less).
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402

TABLE = REPO / "perf" / "lora_curves.csv"
SIZES = (4, 6, 8, 10, 12, 16, 20, 24, 32)
KNOBS = ("learning_rate", "target_modules", "lora_r", "gradient_accumulation_steps")


def final_rows(path: Path) -> list[dict[str, Any]]:
    """Each configuration's knobs and its last rung's held-out field-F1."""
    last: dict[str, dict[str, str]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            held = last.get(row["config_id"])
            if held is None or int(row["rung"]) > int(held["rung"]):
                last[row["config_id"]] = row
    return [{"learning_rate": float(r["learning_rate"]), "target_modules": r["target_modules"],
             "lora_r": int(r["lora_r"]),
             "gradient_accumulation_steps": int(r["gradient_accumulation_steps"]),
             "value": float(r["heldout_field_f1"])} for r in last.values()]  # fmt: skip


def importances(rows: list[dict[str, Any]], space: dict[str, Any]) -> dict[str, float]:
    """Optuna's fANOVA importances (seed 0, as the sweep's picture) of a study holding ``rows``."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    study = optuna.create_study(direction="maximize")
    for row in rows:
        study.add_trial(optuna.trial.create_trial(
            params={k: row[k] for k in KNOBS}, distributions=space, value=row["value"]))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    return {k: float(found.get(k, 0.0)) for k in KNOBS}


def distributions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution

    return {k: CategoricalDistribution(sorted({r[k] for r in rows}, key=str)) for k in KNOBS}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = final_rows(args.table)
    space = distributions(rows)
    reference = importances(rows, space)
    top = max(reference, key=reference.__getitem__)
    picked = random.Random(0)
    sizes = []
    for n in SIZES:
        hits, errors = 0, []
        for _ in range(args.repeats):
            found = importances(picked.sample(rows, n), space)
            hits += max(found, key=found.__getitem__) == top
            errors.append(statistics.fmean(abs(found[k] - reference[k]) for k in KNOBS))
        sizes.append({"trials": n, "top_knob_agreement": hits / args.repeats,
                      "mean_abs_error": statistics.fmean(errors)})  # fmt: skip
        print(f"{n} trials: top knob {hits / args.repeats:.0%}, error "
              f"{statistics.fmean(errors):.3f}", file=sys.stderr, flush=True)  # fmt: skip
    result = {
        "settings": {"table": "perf/lora_curves.csv", "configurations": len(rows),
                     "repeats": args.repeats, "knobs": list(KNOBS),
                     "evaluator": "optuna FanovaImportanceEvaluator(seed=0)"},
        "reference": reference, "reference_top": top, "sizes": sizes,
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    main()
