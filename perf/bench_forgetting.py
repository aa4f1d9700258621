"""Forgetting: does the guard catch an adapter that forgot, and pass a healthy one; how well does
the screening tier rank adapters; what share of the sweep it costs.

    python perf/bench_forgetting.py --mirror ../shared/benchmarks

A real sweep of the shipped search_spaces/lora.yaml (SmolLM2-135M, the embedded data, its
benchmarks and guard: HellaSwag, margin 0.05), with the learning rate on a grid from healthy to
destructive (``--lrs``; rank 16, all linear layers, batch 4, ``--epochs`` 1, no early stopping), and
TruthfulQA-MC2 screened on as many documents as the guarded task (``proxy_sizes``) so that a
second task can be ranked. Every completed adapter and the base model are then scored on:

- TruthfulQA-MC2's full set (817 questions): the reference ranking for its screening;
- HellaSwag's finalist sample (498 documents): the reference for the guarded task's screening
  (its full set, 10,042 documents, would take hours per adapter on 2 CPU cores).

Reported: each trial's guard verdict and its screening numbers, Spearman's rho between the
screening tier and each reference over the adapters, and the screening's share of trial and
sweep time (as run, and as the shipped config would pay it: TruthfulQA-MC2 on its 8 proxy
documents, estimated from its measured seconds per document).

``--reuse PREVIOUS.json`` takes the references of an earlier run of this bench for the trials
whose adapter is the same: the same learning rate and the same held-out loss to 12 significant
digits (training is seeded and deterministic on CPU; scoring does not touch it). The rest are
scored afresh; each row says which.
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
from bench_benchmarks import trial_wall_seconds  # noqa: E402

LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def sweep_config(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "search_spaces" / "lora.yaml").read_text())
    for split in ("train", "heldout"):
        raw["data"][split] = str((REPO / "search_spaces" / raw["data"][split]).resolve())
    raw["search_space"] = {
        "learning_rate": list(args.lrs), "lora_r": [16], "lora_alpha": [32], "num_epochs": [args.epochs],
        "sequence_len": [256], "gradient_accumulation_steps": [1],
        "lora_target_modules": ["all-linear"],
    }  # fmt: skip
    raw["search"].update(algorithm="grid", num_samples=len(args.lrs), max_concurrent=2)
    raw["scheduler"] = {"type": "none"}
    raw["benchmarks"].update(mirror=str(args.mirror.resolve()), optional=False,
                             finalists=args.finalists,
                             proxy_sizes={"truthfulqa_mc2": args.screen_tqa})  # fmt: skip
    raw["tracking"] = {"mlflow_uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "perf",
                       "state_dir": str(tmp / "sweeps")}  # fmt: skip
    return dict(raw)


def reusable(previous: dict[str, Any], record: Any) -> dict[str, float] | None:
    """An earlier run's references for ``record``'s adapter, if it is the same adapter."""
    loss = record.metrics.get("heldout/loss")
    for row in previous.get("trials", []):
        same_lr = row.get("learning_rate") == record.params.get("learning_rate")
        old = row.get("heldout_loss")
        if same_lr and old is not None and loss is not None and f"{old:.12g}" == f"{loss:.12g}":
            return {"hellaswag": row["ref_hellaswag_498"],
                    "truthfulqa_mc2": row["ref_truthfulqa_mc2_full"]}  # fmt: skip
    return None


def reference_scores(
    state: Any, spec: Any, plan: Any, previous: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Base and every completed adapter: TruthfulQA-MC2's full set, HellaSwag's 498."""
    from peft import PeftModel

    from evals.benchmark_plan import FULL, primary_scores, score_plan
    from sweeps.driver.benchmarking import BaseModel

    sets = {
        "truthfulqa_mc2": replace(plan, tasks=["truthfulqa_mc2"], finalist_documents={}),
        "hellaswag": replace(plan, tasks=["hellaswag"]),
    }
    model, tokenizer = BaseModel(spec)()
    out: dict[str, dict[str, float]] = {"base": dict(previous.get("base_reference", {}))}
    for task, task_plan in sets.items():
        if task not in out["base"]:  # the base model is the same model whichever run scored it
            out["base"][task] = primary_scores(
                score_plan(model, tokenizer, task_plan, phase=FULL)[0], task_plan)[task]  # fmt: skip
    for record in state.trials.values():
        if record.status != "completed" or not record.adapter_path:
            continue
        if (again := reusable(previous, record)) is not None:
            out[record.trial_id] = {**again, "reused": 1.0}
            continue
        tuned = PeftModel.from_pretrained(model, record.adapter_path).eval()
        out[record.trial_id] = {
            task: primary_scores(score_plan(tuned, tokenizer, p, phase=FULL)[0], p)[task]
            for task, p in sets.items()
        }
        model = tuned.unload()
    return out


def trial_rows(state: Any, walls: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for record in state.trials.values():
        m = record.metrics
        verdict = ("failed" if record.guard else "unresolved" if record.guard_open
                   else "passed")  # fmt: skip
        rows.append({
            "trial": record.trial_id, "status": record.status,
            "learning_rate": record.params.get("learning_rate"),
            "heldout": m.get("heldout/field_f1"), "heldout_loss": m.get("heldout/loss"),
            "wall_s": walls.get(record.trial_id), "screen_s": m.get("bench/proxy/seconds"),
            "finalist_s": m.get("bench/full/seconds"),
            **{f"screen_{task}_s": m.get(f"bench/proxy/{task}/seconds")
               for task in ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")},
            "guard": verdict if record.status == "completed" else None,
            "guard_reason": "; ".join(record.guard or record.guard_open),
            "finalist": record.finalist,
            **{f"{phase}_{task}_{stat}": m.get(f"bench/{phase}/{task}/{stat}")
               for phase in ("proxy", "full") for task in ("hellaswag", "truthfulqa_mc2")
               for stat in ("delta", "documents", "detectable_drop", "delta_p_value")},
            "proxy_hellaswag": m.get("bench/proxy/hellaswag/acc_norm"),
            "proxy_truthfulqa_mc2": m.get("bench/proxy/truthfulqa_mc2/acc"),
        })  # fmt: skip
    return rows


def rank_correlations(done: Any, *, base: dict[str, float], screen_tqa: int) -> dict[str, float]:
    """Spearman's rho over the completed adapters between the screening tier and the reference:
    of the paired deltas against the base (what the guard reads; comparable across trials whose
    looks stopped at different sizes), and of the raw scores."""
    hs = "/".join(str(int(n)) for n in sorted(set(done["proxy_hellaswag_documents"])))
    pairs = {
        f"hellaswag (screening {hs} vs 498)": ("hellaswag", "ref_hellaswag_498"),
        f"truthfulqa_mc2 (screening {screen_tqa} vs full 817)": (
            "truthfulqa_mc2", "ref_truthfulqa_mc2_full"),
    }  # fmt: skip
    rho = {}
    for name, (task, ref) in pairs.items():
        delta = done[f"proxy_{task}_delta"].corr(done[ref] - base[task], method="spearman")
        raw = done[f"proxy_{task}"].corr(done[ref], method="spearman")
        rho[f"{name}, deltas"], rho[f"{name}, scores"] = float(delta), float(raw)
    return rho


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--lrs", type=float, nargs="+", default=LRS)
    parser.add_argument("--screen-tqa", type=int, default=92)
    parser.add_argument("--finalists", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reuse", type=Path, help="an earlier run's result JSON (see above)")
    args = parser.parse_args(argv)
    previous = json.loads(args.reuse.read_text()) if args.reuse else {}

    import pandas as pd
    from rich.console import Console

    from sweeps import launch_sweep
    from sweeps.config import config_from_dict
    from sweeps.driver.preflight import coerce_config, preflight

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw = sweep_config(args, tmp)
        console = io.StringIO()
        started = time.perf_counter()
        state = launch_sweep(raw, console=Console(file=console, width=200))
        sweep_seconds = time.perf_counter() - started
        walls = trial_wall_seconds(state)
        config, _, config_dir = coerce_config(config_from_dict(raw))
        plan = preflight(config, config_path=None, config_dir=config_dir, progress=lambda _: None)
        started = time.perf_counter()
        reference = reference_scores(state, plan.spec, plan.spec.benchmarks, previous)
        reference_seconds = time.perf_counter() - started
    rows = trial_rows(state, walls)
    for row in rows:
        ref = reference.get(row["trial"], {})
        row["ref_hellaswag_498"] = ref.get("hellaswag")
        row["ref_truthfulqa_mc2_full"] = ref.get("truthfulqa_mc2")
        row["reference"] = "reused" if ref.get("reused") else "scored"
    done = pd.DataFrame([r for r in rows if r["status"] == "completed"])
    rho = rank_correlations(done, base=reference["base"], screen_tqa=args.screen_tqa)
    screen = float(done["screen_s"].sum())
    finalists = float(done["finalist_s"].fillna(0).sum())
    extra = float((done["screen_truthfulqa_mc2_s"] * (1 - 8 / args.screen_tqa)).sum())
    result = {
        "settings": {"lrs": list(args.lrs), "screen_tqa": args.screen_tqa,
                     "finalists": args.finalists, "guard": raw["objective"].get("guard"),
                     "epochs": args.epochs,
                     "tasks": raw["benchmarks"]["tasks"]},
        "sweep_seconds": sweep_seconds, "reference_seconds": reference_seconds,
        "base_reference": reference["base"], "trials": rows, "spearman": rho,
        "screen_share_of_trial_time": screen / float(done["wall_s"].sum()),
        "screen_seconds_total": screen,
        # the sweep's wall time x its 2 trial slots: what the screening took of the machine
        "screen_share_of_sweep_slots": screen / (sweep_seconds * raw["search"]["max_concurrent"]),
        "finalist_seconds_total": finalists,
        "finalist_share_of_sweep": finalists / sweep_seconds,
        "screen_share_shipped_estimate": (screen - extra) / float(done["wall_s"].sum() - extra),
        "hellaswag_screen_documents": {r["trial"]: r["proxy_hellaswag_documents"] for r in rows},
        "console": [line for line in console.getvalue().splitlines()
                    if line.startswith(("Guard", "Finalist", "Scoring"))],
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    main()
