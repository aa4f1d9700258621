"""What a user may name an adapter by on the command line, resolved to its directory.

- an adapter directory (it holds ``adapter_config.json``);
- ``SWEEP`` (its best trial) or ``SWEEP/TRIAL``, by name under the state directory;
- an MLflow run id of a trial, looked up in the sweeps' state files.

Names are checked so that they cannot escape the state directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sweeps.config import ConfigError
from sweeps.state import list_sweeps, load_state

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class AdapterRef:
    """A resolved adapter: its directory, the base model it was trained on, and where it came
    from (``sweep``/``trial``/``run_id`` are empty for a bare directory)."""

    path: Path
    base_model: str
    sweep: str = ""
    trial_id: str = ""
    run_id: str = ""

    def describe(self) -> str:
        return f"{self.sweep}/{self.trial_id}" if self.sweep else str(self.path)


def resolve_adapter(ref: str, *, state_dir: Path) -> AdapterRef:
    """An adapter directory, ``SWEEP``, ``SWEEP/TRIAL`` or a trial's MLflow run id."""
    if "\x00" in ref:
        raise ConfigError(f"adapter reference {ref!r}: NUL character")
    path = Path(ref).expanduser()
    if (path / ADAPTER_CONFIG).is_file():
        return AdapterRef(path=path.resolve(), base_model=_base_model(path))
    if path.exists():
        raise ConfigError(f"{ref}: not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    sweep, _, trial = ref.partition("/")
    if sweep in list_sweeps(state_dir):
        return _from_sweep(sweep, trial, state_dir=state_dir)
    found = _by_run_id(ref, state_dir=state_dir)
    if found is not None:
        return found
    known = ", ".join(list_sweeps(state_dir)) or "none"
    raise ConfigError(
        f"{ref}: neither an adapter directory, a sweep (sweeps under {state_dir}: {known}), "
        "SWEEP/TRIAL, nor a trial's MLflow run id"
    )


def _from_sweep(sweep: str, trial_id: str, *, state_dir: Path) -> AdapterRef:
    state = load_state(sweep, state_dir=state_dir)
    if trial_id:
        record = state.trials.get(trial_id)
        if record is None:
            raise ConfigError(
                f"sweep {sweep} has no trial {trial_id!r} (trials: {', '.join(state.trials)})"
            )
    else:
        record = state.best_trial()
        if record is None:
            raise ConfigError(f"sweep {sweep} has no eligible best trial")
    if not record.adapter_path or not (Path(record.adapter_path) / ADAPTER_CONFIG).is_file():
        raise ConfigError(f"{sweep}/{record.trial_id}: no saved adapter (status {record.status})")
    path = Path(record.adapter_path)
    return AdapterRef(path=path, base_model=_base_model(path), sweep=sweep,
                      trial_id=record.trial_id, run_id=record.run_id)  # fmt: skip


def _by_run_id(run_id: str, *, state_dir: Path) -> AdapterRef | None:
    if not run_id.isalnum():
        return None
    for sweep in list_sweeps(state_dir):
        state = load_state(sweep, state_dir=state_dir)
        for record in state.trials.values():
            if record.run_id == run_id:
                return _from_sweep(sweep, record.trial_id, state_dir=state_dir)
    return None


def _base_model(adapter: Path) -> str:
    """The base model the adapter records (``base_model_name_or_path``)."""
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{adapter / ADAPTER_CONFIG}: no base_model_name_or_path")
    return str(base)
