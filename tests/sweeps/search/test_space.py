"""YAML search space -> Optuna: real studies sample inside the declared domains."""

from __future__ import annotations

import optuna
import pytest
from pydantic import ValidationError

from sweeps.config import KNOBS, Hyperparameters, TrainingConfig, config_from_dict
from sweeps.search.space import (
    define_by_run,
    describe,
    grid_size,
    grid_values,
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
        params = Hyperparameters.from_trial(values, training=config.training)
        assert set(values) - set(KNOBS) == {"lora_alpha_ratio"}  # Optuna's, left out
        assert 1e-4 <= params.learning_rate <= 1e-2
        assert params.lora_r in (4, 8, 16) and isinstance(params.lora_r, int)
        assert params.lora_alpha == params.lora_r * trial.params["lora_alpha_ratio"]
        assert params.num_epochs in (1, 2, 3)
        assert params.lora_dropout == 0.05  # fixed from training
        assert params.lora_target_modules == ("all-linear",)
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


def test_a_trials_knobs_are_typed_once_and_missing_ones_are_named() -> None:
    """Ray's flat config becomes Hyperparameters: a searched knob it lacks is named; a training
    knob it lacks (a sweep launched before the knob was searchable) keeps training's value; an
    integer knob holding a whole float is an int; a value outside the knob's domain is refused."""
    training = TrainingConfig(micro_batch_size=2, lora_target_modules=["q_proj", "v_proj"])
    with pytest.raises(ValidationError, match="lora_r"):
        Hyperparameters.from_trial({"learning_rate": 1.0, "lora_alpha": 2.0}, training=training)
    knobs = Hyperparameters.from_trial(
        {"learning_rate": 1e-3, "lora_r": 8.0, "lora_alpha": 16.0, "sequence_len": 256,
         "lora_target_modules": "attention", "lora_alpha_ratio": 2.0}, training=training)  # fmt: skip
    assert knobs.lora_r == 8 and isinstance(knobs.lora_r, int)
    assert knobs.micro_batch_size == 2 and knobs.lora_target_modules == ("attention",)
    assert knobs.num_epochs == 1  # the knob's own default
    with pytest.raises(ValidationError, match="lora_dropout"):
        Hyperparameters.from_trial({**knobs.model_dump(), "lora_dropout": 1.0}, training=training)
