"""What a user may name an adapter by on the command line, resolved to its directory.

- an adapter directory (it holds ``adapter_config.json``);
- ``SWEEP`` (its best trial) or ``SWEEP/TRIAL``, by name under the state directory;
- an MLflow run id of a trial, looked up in the sweeps' state files;
- a registry version: ``champion`` or ``previous`` (the alias, when one registered model has
  it), ``NAME@ALIAS``, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``. It resolves to the
  sweep's own copy when that is still there with the same weights, else to the registry's files.

Names are checked so that they cannot escape the state directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sweeps.config import ConfigError, check_safe_name
from sweeps.tracking.state import list_sweeps, load_state

ADAPTER_CONFIG = "adapter_config.json"
ALIASES = ("champion", "previous")


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


def resolve_adapter(ref: str, *, state_dir: Path, mlflow_uri: str | None = None) -> AdapterRef:
    """An adapter directory, ``SWEEP``, ``SWEEP/TRIAL``, a trial's MLflow run id, or (with
    ``mlflow_uri``) a registry alias or version."""
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
    registry_ref = parse_registry_ref(ref)
    if registry_ref is not None and mlflow_uri is not None:
        return _from_registry(*registry_ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
    known = ", ".join(list_sweeps(state_dir)) or "none"
    raise ConfigError(
        f"{ref}: neither an adapter directory, a sweep (sweeps under {state_dir}: {known}), "
        "SWEEP/TRIAL, a trial's MLflow run id, nor a registry alias or version"
    )


def parse_registry_ref(ref: str) -> tuple[str, str, str] | None:
    """``(name, "alias"|"version", value)``; the name is empty for a bare alias."""
    body = ref.removeprefix("models:/")
    if ref in ALIASES:
        return "", "alias", ref
    if "@" in body:
        name, _, alias = body.partition("@")
        return (name, "alias", alias) if name and alias else None
    if ref.startswith("models:/") and "/" in body:
        name, _, version = body.partition("/")
        return (name, "version", version) if name and version.isdigit() else None
    return None


def _from_registry(
    name: str, kind: str, value: str, *, state_dir: Path, mlflow_uri: str
) -> AdapterRef:
    from sweeps.tracking.mlflow_facade import ModelRegistry

    registry = ModelRegistry(mlflow_uri)
    if not name:
        names = registry.models_with_alias(value)
        if len(names) != 1:
            which = ", ".join(names) or "none"
            raise ConfigError(
                f"{value}: {len(names)} registered models have this alias "
                f"({which}); name one as NAME@{value}"
            )
        name = names[0]
    found = registry.by_alias(name, value) if kind == "alias" else registry.version(name, value)
    if found is None:
        raise ConfigError(f"registered model {name!r} has no {kind} {value!r} in {mlflow_uri}")
    tags = found["tags"]
    local = _local_copy(tags, state_dir=state_dir)
    if local is not None:
        return local
    from trainers.models import cache_root

    check_safe_name(name, what="registered model name")  # it names a cache directory
    files = registry.download(
        name, found["version"], cache_root() / "registry" / name / found["version"]
    )
    base = json.loads((files / "base_model.json").read_text())["path"]
    return AdapterRef(
        path=files / "adapter",
        base_model=base,
        sweep=tags.get("lora_sweep.sweep", ""),
        trial_id=tags.get("lora_sweep.trial_id", ""),
        run_id=found["run_id"],
    )


def _local_copy(tags: dict[str, str], *, state_dir: Path) -> AdapterRef | None:
    """The sweep's own adapter for a registry version, if it is still there, unchanged."""
    from sweeps.serving.scoring import adapter_digest

    sweep, trial = tags.get("lora_sweep.sweep", ""), tags.get("lora_sweep.trial_id", "")
    if sweep not in list_sweeps(state_dir):
        return None
    try:
        ref = _from_sweep(sweep, trial, state_dir=state_dir)
    except ConfigError:
        return None
    return ref if adapter_digest(ref.path) == tags.get("adapter.sha256") else None


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
    return AdapterRef(
        path=path,
        base_model=_base_model(path),
        sweep=sweep,
        trial_id=record.trial_id,
        run_id=record.run_id,
    )


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
