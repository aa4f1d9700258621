"""A planted regression on the real embedded model: the guard flags the adapter that forgot and
passes the healthy one, in one real sweep (run with `make test-integration`; needs the benchmark
mirror: $LORA_SWEEP_BENCHMARK_MIRROR, or ../shared/benchmarks beside the repository).

Two trials on the embedded notes-to-JSON task differ only in the learning rate: a healthy one,
and one high enough to damage what SmolLM2-135M knows. HellaSwag is where this model has
something to lose (about 0.40 acc_norm against 0.25 by chance; ARC, MMLU and TruthfulQA-MC2 sit
at chance), so it is the guarded task, with the shipped margin of 5 points. The guard's verdicts
rest on the screening tier (54 or 108 documents, enough to catch a 15-point collapse) and the finalist
tier (up to 498, a 5-point resolution): on the 8 documents the guard once decided on, the
healthy adapter could never be called clean (8 documents detect nothing), and a collapse would
almost never be significant.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, slice_embedded_data

pytestmark = pytest.mark.integration

HEALTHY_LR, FORGETTING_LR = 1e-3, 3e-2  # perf/bench_forgetting.py, docs/perf.md (j)


def mirror() -> Path:
    path = Path(
        os.environ.get("LORA_SWEEP_BENCHMARK_MIRROR") or REPO.parent / "shared" / "benchmarks"
    )
    if (
        not (path / "hellaswag_validation_DERIVED_lossy.jsonl").is_file()
        and not (path / "hellaswag_validation.jsonl").is_file()
    ):
        pytest.skip(f"no HellaSwag data in the benchmark mirror {path}")
    return path


def test_the_guard_flags_the_adapter_that_forgot_and_passes_the_healthy_one(
    tmp_path: Path,
) -> None:
    from sweeps import launch_sweep

    config = yaml.safe_load((REPO / "search_spaces" / "lora.yaml").read_text())
    data = slice_embedded_data(tmp_path, train=128, heldout=24)
    config["data"].update(train=str(data["train"]), heldout=str(data["heldout"]))
    config["search_space"] = {
        "learning_rate": [HEALTHY_LR, FORGETTING_LR], "lora_r": [16], "lora_alpha": [32],
        "num_epochs": [1], "sequence_len": [256], "gradient_accumulation_steps": [1],
        "lora_target_modules": ["all-linear"],
    }  # fmt: skip
    config["search"].update(algorithm="grid", num_samples=2, max_concurrent=2)
    config["scheduler"] = {"type": "none"}
    config["benchmarks"].update(tasks=["hellaswag"], mirror=str(mirror()), optional=False,
                                finalists=2)  # fmt: skip
    assert config["objective"]["guard"] == {"hellaswag": 0.05}  # the shipped guard
    config["tracking"] = {"mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                          "experiment": "forgetting", "state_dir": str(tmp_path / "sweeps")}  # fmt: skip
    state = launch_sweep(config, name="forgetting")
    assert state.status == "completed"
    by_lr = {t.params["learning_rate"]: t for t in state.trials.values()}
    healthy, forgot = by_lr[HEALTHY_LR], by_lr[FORGETTING_LR]
    assert healthy.status == forgot.status == "completed"
    # the adapter that forgot: flagged, on the screening's or the finalist tier's documents
    assert forgot.guard and forgot.guard[0].startswith("hellaswag: -")
    documents = max(forgot.metrics.get(f"bench/{phase}/hellaswag/documents", 0)
                    for phase in ("proxy", "full"))  # fmt: skip
    assert documents >= 54  # the first screening look
    # the healthy one: cleared, which needs documents that could show a 5-point drop
    assert healthy.guard == [] and healthy.guard_open == [], healthy.guard_open
    assert healthy.metrics["bench/full/hellaswag/documents"] >= 100  # the first finalist look
    assert state.best_trial() is healthy
