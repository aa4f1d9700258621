"""YAML search space -> Optuna: real studies sample inside the declared domains."""

from __future__ import annotations

import math

import optuna
import pytest

from sweeps.config import config_from_dict
from sweeps.space import (
    HYPERPARAMETERS,
    define_by_run,
    describe,
    grid_size,
    grid_values,
    trial_hyperparameters,
)

SPACE = {
    "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
    "lora_r": [4, 8, 16],
    "lora_alpha": {"type": "ratio_of_r", "values": [1, 2]},
    "num_epochs": {"type": "int", "low": 1, "high": 3},
    "sequence_len": [128, 256],
}


def make(space: dict, **extra: object) -> object:
    return config_from_dict({"data": {"train": "t.jsonl"}, "search_space": space, **extra})


def test_samples_stay_in_domain_and_alpha_follows_r() -> None:
    config = make(SPACE)
    space = define_by_run(config)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        derived = space(trial)
        values = {**trial.params, **derived}
        params = trial_hyperparameters(values)
        assert set(params) == set(HYPERPARAMETERS)
        assert 1e-4 <= params["learning_rate"] <= 1e-2
        assert params["lora_r"] in (4, 8, 16)
        assert params["lora_alpha"] == params["lora_r"] * trial.params["lora_alpha_ratio"]
        assert params["num_epochs"] in (1, 2, 3)
        assert params["lora_dropout"] == 0.05  # fixed from training
        study.tell(trial, 0.0)
    lrs = [t.params["learning_rate"] for t in study.trials]
    assert len(set(lrs)) == 30
    # log-uniform: about half the samples fall below the geometric midpoint 1e-3
    below = sum(lr < 1e-3 for lr in lrs)
    assert 5 <= below <= 25


def test_distributions_are_the_declared_kinds() -> None:
    study = optuna.create_study()
    trial = study.ask()
    define_by_run(make(SPACE))(trial)
    dists = trial.distributions
    assert isinstance(dists["learning_rate"], optuna.distributions.FloatDistribution)
    assert dists["learning_rate"].log is True
    assert isinstance(dists["num_epochs"], optuna.distributions.IntDistribution)
    assert isinstance(dists["lora_r"], optuna.distributions.CategoricalDistribution)


def test_grid_covers_every_combination() -> None:
    space = {**SPACE, "learning_rate": [1e-4, 1e-3]}
    config = make(space, search={"algorithm": "grid"})
    grid = grid_values(config)
    assert grid["lora_r"] == [4, 8, 16] and grid["num_epochs"] == [1, 2, 3]
    assert grid_size(config) == 2 * 3 * 2 * 3 * 2
    sampler = optuna.samplers.GridSampler(grid, seed=0)
    study = optuna.create_study(sampler=sampler)
    seen = set()

    def objective(trial: optuna.Trial) -> float:
        define_by_run(config)(trial)
        seen.add(tuple(sorted(trial.params.items())))
        return 0.0

    study.optimize(objective, n_trials=grid_size(config) + 5)  # GridSampler stops when exhausted
    assert len(seen) == grid_size(config) == len(study.trials)


def test_describe_is_readable() -> None:
    text = describe(make(SPACE))
    assert text["learning_rate"] == "loguniform(0.0001, 0.01)"
    assert text["lora_alpha"].startswith("lora_r x choice")
    assert text["lora_dropout"] == "fixed 0.05"


def test_missing_hyperparameter_is_named() -> None:
    with pytest.raises(KeyError, match="lora_r"):
        trial_hyperparameters({"learning_rate": 1.0})
    assert math.isclose(trial_hyperparameters(dict.fromkeys(HYPERPARAMETERS, 1.0))["lora_r"], 1)
