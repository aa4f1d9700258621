"""What PEFT's LoRA variants do on the curve table's task, against plain LoRA trained the same way.

    python perf/make_lora_curves.py --variants          # perf/lora_variants.csv (~20 min)
    python perf/bench_variants.py --out /tmp/variants.json
    python perf/run_all.py --merge variants /tmp/variants.json

perf/make_lora_curves.py --variants trains rsLoRA, DoRA, PiSSA and OLoRA initialisation and LoRA+
(learning-rate ratio 16) on two of the grid's configurations (all-linear, r 16, alpha 32): one at
learning rate 1e-4 with accumulation 4, which plain LoRA under-trains, and one at 1e-3 with no
accumulation, near the table's best. Plain LoRA's curve for the same configuration is the grid's
own row in perf/lora_curves.csv (the same recipe, data, seed and rungs).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402
from make_lora_curves import TABLE as CURVES  # noqa: E402
from make_lora_curves import VARIANTS_TABLE as VARIANTS  # noqa: E402

PLAIN = "plain LoRA"


def finals(path: Path, *, keyed_by_variant: bool) -> dict[tuple[str, str], dict[str, float]]:
    """Each (configuration, variant)'s last rung: field-F1, held-out loss and wall seconds."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            variant = row["variant"] if keyed_by_variant else PLAIN
            base = row["config_id"].removesuffix(f"-{variant}") if keyed_by_variant else (
                row["config_id"])  # fmt: skip
            key = (base, variant)
            if key not in out or int(row["rung"]) > out[key]["rung"]:
                out[key] = {"rung": int(row["rung"]),
                            "field_f1": float(row["heldout_field_f1"]),
                            "heldout_loss": float(row["heldout_loss"]),
                            "seconds": float(row["wall_seconds"])}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = finals(VARIANTS, keyed_by_variant=True)
    plain = finals(CURVES, keyed_by_variant=False)
    bases = sorted({base for base, _ in variants})
    rows = []
    for base in bases:
        reference = plain[(base, PLAIN)]
        for (b, variant), end in sorted(variants.items()):
            if b != base:
                continue
            rows.append({"configuration": base, "variant": variant, **end,
                         "field_f1_gain": end["field_f1"] - reference["field_f1"],
                         "seconds_ratio": end["seconds"] / reference["seconds"]})  # fmt: skip
        rows.append({"configuration": base, "variant": PLAIN, **reference,
                     "field_f1_gain": 0.0, "seconds_ratio": 1.0})  # fmt: skip
    return emit({"settings": {"table": "perf/lora_variants.csv", "plain": "perf/lora_curves.csv"},
                 "rows": rows}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
