"""The Python API: one trial in-process with given hyperparameters (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps import run_trial, validate_config
from sweeps.api import fill_hyperparameters
from sweeps.config import ConfigError
from tests.conftest import nothing_reached_mlflow, tiny_sweep_config


def test_run_trial_creates_and_fine_tunes_an_adapter(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    config = tiny_sweep_config(tiny_model, small_data, tmp_path)
    outcome = run_trial(
        config,
        {"learning_rate": 5e-3, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "num_epochs": 1},
        output_dir=tmp_path / "one",
    )
    assert (outcome.adapter_path / "adapter_model.safetensors").is_file()
    assert [m["rung"] for m in outcome.history] == [1.0, 2.0]
    assert outcome.metrics["final_rung"] == 1.0
    assert outcome.history[-1]["heldout/loss"] < outcome.history[0]["heldout/loss"]
    assert len(list((tmp_path / "one" / "checkpoints").iterdir())) == 1  # older checkpoints pruned
    assert nothing_reached_mlflow(tmp_path)  # run_trial writes no MLflow runs


def test_fill_hyperparameters_uses_fixed_values_and_asks_for_searched_ones(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    config = validate_config(tiny_sweep_config(tiny_model, small_data, tmp_path))
    filled = fill_hyperparameters(config, {"learning_rate": 1e-3, "lora_r": 4, "num_epochs": 1})
    assert filled.lora_alpha == 4.0  # first ratio (1) x r
    assert filled.sequence_len == 128 and filled.lora_dropout == 0.05
    with pytest.raises(
        ConfigError,
        match=r"(?m)^hyperparameters: lora_r: Input should be greater than or equal to 1$",
    ):
        fill_hyperparameters(config, {"learning_rate": 1e-3, "lora_r": 0, "num_epochs": 1})
    with pytest.raises(ConfigError, match="'lora_r' is searched"):
        fill_hyperparameters(config, {"learning_rate": 1e-3, "num_epochs": 1})
    with pytest.raises(ConfigError, match="unknown hyperparameters"):
        fill_hyperparameters(config, {"lr": 1e-3})
