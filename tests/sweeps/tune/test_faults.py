"""Trial faults that a restart would only repeat: a NaN/inf loss (or an out-of-memory error) ends
the trial as failed with its reason, not retried, and the sweep goes on (real Ray, Optuna, MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from sweeps.tune.trainable import _deterministic_fault
from tests.conftest import slice_embedded_data, tiny_sweep_config


@pytest.fixture(scope="module")
def faulty(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("faults")
    data = slice_embedded_data(tmp, train=24, heldout=6)
    config = tiny_sweep_config(  # a learning rate of 1e37 overflows the loss after warm-up
        tiny_model, data, tmp, search={"algorithm": "grid", "num_samples": 2, "max_concurrent": 2},
        scheduler={"type": "none"}, search_space={"learning_rate": [1e-3, 1e37], "lora_r": [2],
        "lora_alpha": 4, "num_epochs": 1, "sequence_len": [128]},
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LORA_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        state = launch_sweep(config, name="faulty")
    return {"state": state, "config": config}


def test_a_nan_loss_fails_the_trial_with_its_reason_and_the_sweep_goes_on(
    faulty: dict[str, Any],
) -> None:
    state = faulty["state"]
    assert state.status == "completed"
    by_lr = {t.params["learning_rate"]: t for t in state.trials.values()}
    good, bad = by_lr[1e-3], by_lr[1e37]
    assert good.status == "completed"
    assert bad.status == "failed" and bad.error is not None
    assert "training loss became" in bad.error and "NaN/inf loss: not retried" in bad.error
    marker = state.path / "faults" / f"{bad.trial_id}.txt"
    assert marker.read_text() in bad.error  # the restart raised it again without training
    run = MlflowClient(faulty["config"]["tracking"]["mlflow_uri"]).get_run(bad.run_id)
    assert run.info.status == "FAILED" and "training loss became" in run.data.tags["failure_reason"]
    study = optuna.load_study(
        study_name=state.name, storage=f"sqlite:///{state.path / 'optuna.db'}"
    )
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (MemoryError(), "out of memory: MemoryError"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
         "out of memory: DefaultCPUAllocator: can't allocate memory"),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
         "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"),
        (FloatingPointError("training loss became nan at step 3"), "(NaN/inf loss: not retried)"),
        (RuntimeError("worker connection lost"), None),
    ],
)  # fmt: skip
def test_faults_that_would_recur_are_told_from_those_worth_a_restart(
    error: BaseException, reason: str | None
) -> None:
    """Out of memory (CPU, CUDA, Python) and NaN/inf loss end the trial with the reason; any
    other error is worth a restart from the checkpoint."""
    found = _deterministic_fault(error)
    assert found == reason if reason is None else reason in str(found)
