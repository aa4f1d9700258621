"""Fractional GPUs with Ray's logical GPUs (``--num-gpus`` on a machine without CUDA): half a GPU
per trial packs two trials per GPU, and each trial sees the GPU Ray gave it in
CUDA_VISIBLE_DEVICES (recorded on its MLflow run). Real Ray, Optuna and MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import launch_counting_concurrency


@pytest.mark.own_ray
@pytest.mark.timeout(900)  # a scheduling regression would hang Ray: fail instead
def test_half_a_gpu_per_trial_packs_two_trials_per_gpu(tiny_model: Path, tmp_path: Path) -> None:
    assert not torch.cuda.is_available(), "this test uses logical GPUs on a CPU machine"
    data = slice_embedded_data(tmp_path, train=32, heldout=4)
    config = tiny_sweep_config(
        tiny_model, data, tmp_path, scheduler={"type": "none"},
        search={"algorithm": "random", "num_samples": 6, "max_concurrent": 6},
        search_space={"num_epochs": 2, "lora_r": [2, 4], "sequence_len": [128]},
        resources={"cpu": 0.25, "gpu": 0.5},  # CPUs would allow 8 at once: the GPUs bind
        evaluation={"max_new_tokens": 4, "batch_size": 4, "logged_generations": 1},
    )  # fmt: skip
    state, most = launch_counting_concurrency(config, name="packed", num_cpus=2, num_gpus=2)
    assert state.status == "completed" and len(state.trials) == 6
    assert most == 4, f"{most} trials ran at once on 2 GPUs at 0.5 each (expected 4)"
    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    seen = [client.get_run(t.run_id).data.tags["placement.cuda_visible_devices"]
            for t in state.trials.values()]  # fmt: skip
    assert set(seen) <= {"0", "1"} and all(v for v in seen), seen  # one GPU each, from Ray
    assert all(t.placement["node_id"] for t in state.trials.values())
