"""The Python API behind ``sweeps``: launch a sweep, run one trial, read a sweep's results."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sweeps.config import KNOBS, ConfigError, Hyperparameters, SweepConfig
from sweeps.config.loading import format_validation_errors
from sweeps.driver.preflight import coerce_config, preflight
from sweeps.search.space import active_specs, fixed_value
from sweeps.tracking.state import DEFAULT_STATE_DIR, SweepState, TrialRecord, load_state


@dataclass
class TrialOutcome:
    """What ``run_trial`` returns: the last rung's metrics, every rung, and the adapter."""

    metrics: dict[str, float]
    adapter_path: Path
    history: list[dict[str, float]] = field(default_factory=list)


def validate_config(config: str | Path | dict[str, object]) -> SweepConfig:
    """A checked config; raises ConfigError with one line per problem."""
    return coerce_config(config)[0]


def sweep_status(sweep: str, *, state_dir: str | Path = DEFAULT_STATE_DIR) -> SweepState:
    return load_state(sweep, state_dir=Path(state_dir))


def best_trial(sweep: str, *, state_dir: str | Path = DEFAULT_STATE_DIR) -> TrialRecord | None:
    return load_state(sweep, state_dir=Path(state_dir)).best_trial()


def fill_hyperparameters(config: SweepConfig, given: Mapping[str, object]) -> Hyperparameters:
    """Given values, else the config's fixed values (or single choices); searched knobs must be
    given. Checked and typed as a trial's are (:meth:`Hyperparameters.from_trial`)."""
    unknown = set(given) - set(KNOBS)
    if unknown:
        raise ConfigError(f"unknown hyperparameters {sorted(unknown)}; known: {list(KNOBS)}")
    values: dict[str, Any] = dict(given)  # as given: from_trial checks them, after fixed_value
    for knob, spec in active_specs(config).items():
        if knob not in values:
            values[knob] = fixed_value(knob, spec, lora_r=values.get("lora_r"))
        if values[knob] is None:
            raise ConfigError(f"hyperparameter {knob!r} is searched in this config; give a value")
    try:
        return Hyperparameters.from_trial(values, training=config.training)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, path=Path("hyperparameters"))) from None


def run_trial(
    config: str | Path | SweepConfig | dict[str, object],
    hyperparameters: Mapping[str, object],
    *,
    output_dir: str | Path,
    train: str | Path | None = None,
    heldout: str | Path | None = None,
) -> TrialOutcome:
    """Create a LoRA adapter on the base model and fine-tune it once, in this process (no Ray)."""
    from trainers.lora_trial import run_lora_trial

    loaded, path, config_dir = coerce_config(config)
    if train is not None or heldout is not None:
        data = loaded.data.model_copy(
            update={
                "train": str(Path(train).resolve()) if train else loaded.data.train,
                "heldout": str(Path(heldout).resolve()) if heldout else loaded.data.heldout,
            }
        )
        loaded = loaded.model_copy(update={"data": data})
    plan = preflight(loaded, config_path=path, config_dir=config_dir)
    params = fill_hyperparameters(loaded, hyperparameters)
    out = Path(output_dir)
    history: list[dict[str, float]] = []
    latest: list[Path] = []

    def report(metrics: dict[str, float], checkpoint: Path) -> None:
        history.append(metrics)
        for old in latest:
            shutil.rmtree(old, ignore_errors=True)
        latest[:] = [checkpoint]

    metrics = run_lora_trial(plan.spec, params, report=report, workdir=out / "checkpoints")
    adapter = out / "adapter"
    if adapter.exists():
        shutil.rmtree(adapter)
    shutil.copytree(latest[0] / "adapter", adapter)
    return TrialOutcome(metrics=metrics, adapter_path=adapter, history=history)
