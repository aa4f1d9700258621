"""One directory per sweep, and its state file (written atomically, only by the driver).

<state_dir>/<sweep>/state.json      what ``sweep status`` / ``sweep best`` read
<state_dir>/<sweep>/config.yaml     the resolved config the sweep ran with
<state_dir>/<sweep>/launch_config.yaml  what `sweep resume` re-checks and runs with
<state_dir>/<sweep>/trial_spec.json what every trial received (data, model path, settings)
<state_dir>/<sweep>/optuna.db       the persistent Optuna study
<state_dir>/<sweep>/ray/            Ray Tune's trial directories and checkpoints
<state_dir>/<sweep>/adapters/<id>/  each finished trial's final adapter (PEFT format)
<state_dir>/<sweep>/restores.jsonl  each restart of a trial from a checkpoint (and any skipped)
<state_dir>/<sweep>/faults/<id>.txt a fault that would recur (NaN loss, out of memory), not retried
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from evals.metric_keys import COST_DEVICE_SECONDS
from sweeps.config import ConfigError, SweepConfig, Tracking, check_safe_name
from sweeps.search.pareto import Goal, knee, losses, pareto_front

# The schema's defaults (tracking: in a sweep YAML), for commands given no YAML
DEFAULT_STATE_DIR = Path(Tracking().state_dir)
DEFAULT_MLFLOW_URI = Tracking().mlflow_uri
STATE_FILE = "state.json"
TERMINAL = ("completed", "pruned", "failed")  # a trial in one of these never runs again
SPEC_FILE = "trial_spec.json"
RELAUNCH_CONFIG = "launch_config.yaml"  # what `sweep resume` re-checks and runs with
RESTORES_FILE = "restores.jsonl"  # written by the trials' workers, one line per restart
FAULTS_DIR = "faults"  # <sweep>/faults/<trial>.txt: a fault that would recur, with its reason
WORK_DIR = "work"  # <sweep>/work/<trial>: a running trial's checkpoint being written or restored
RAY_TRIAL_ID = "ray_trial_id"  # the Optuna user attribute naming a study trial's Ray trial


class SkippedCheckpoint(TypedDict):
    checkpoint: str
    problem: str


class Restore(TypedDict):
    """One line of restores.jsonl: a trial restarted from one of its checkpoints."""

    trial_id: str
    checkpoint: str
    step: int
    skipped: list[SkippedCheckpoint]  # damaged ones passed over, newest first
    # newer ones whose reports the driver never recorded (absent from lines written before it was)
    unrecorded: NotRequired[list[str]]


def trial_name(number: int | None, ray_id: str | None) -> str:
    """How every view names a trial: ``#3 f65278a5``, its study trial's number (Optuna's pictures
    and optuna-dashboard say "Trial 3") and its Ray trial id (what commands take); either alone
    when the other is unknown (a sweep from before numbers; a warm start's carried trial)."""
    return " ".join(
        [*([f"#{number}"] if number is not None else []), *([ray_id] if ray_id else [])]
    )


@dataclass
class TrialRecord:
    trial_id: str
    run_id: str
    params: dict[str, Any]  # the values Ray gave the trial: numbers, target-set strings
    status: str = "running"
    last_step: int = -1  # the last metric step logged to MLflow (exactly-once guard)
    rungs: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    adapter_path: str | None = None
    error: str | None = None
    finalist: bool = False  # re-scored on the full benchmark sets after the sweep
    guard: list[str] = field(default_factory=list)  # benchmarks it regressed on beyond the margin
    # guarded benchmarks it could not be cleared on: the documents could not show the margin
    guard_open: list[str] = field(default_factory=list)
    final_objective: float | None = None  # the objective with full-set deltas (finalists)
    placement: dict[str, str] = field(default_factory=dict)  # node and GPUs of its last attempt
    checkpoints_freed: int = 0  # bytes of its checkpoints removed when it ended
    number: int | None = None  # its study trial's number: optuna-dashboard's "Trial 3"

    @property
    def name(self) -> str:
        """How every view names the trial (``trial_name``)."""
        return trial_name(self.number, self.trial_id)

    def objective(self, metric: str) -> float | None:
        """The value "best" ranks by: full-set based for finalists, else the trial's own."""
        if self.final_objective is not None:
            return self.final_objective
        return self.metrics.get(metric)


@dataclass
class SweepState:
    name: str
    directory: str
    config_path: str
    objective_metric: str
    objective_mode: str
    task_metric: str
    mlflow_uri: str
    experiment_id: str = ""
    parent_run_id: str = ""
    status: str = "running"
    base_metrics: dict[str, float] = field(default_factory=dict)
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    base_model: str = ""  # as the config names it
    base_model_digest: str = ""  # sha256 of its config and weights (promotion checks it)
    digests: dict[str, str] = field(default_factory=dict)  # sha256 per data file
    also: list[list[str]] = field(default_factory=list)  # more objectives: [metric, mode] each
    pick: str = "knee"  # which trial of the Pareto front is best (objective.pick)
    reruns: dict[str, list[str]] = field(default_factory=dict)  # trial: its failed attempts' runs

    @property
    def goals(self) -> list[Goal]:
        """Every objective, the first (objective_metric) first."""
        pairs = [[self.objective_metric, self.objective_mode], *self.also]
        return [Goal.of(metric, mode) for metric, mode in pairs]

    @property
    def multi_objective(self) -> bool:
        return bool(self.also)

    @property
    def spec_path(self) -> Path:
        """The trial spec the sweep ran with (what promote and compare score against)."""
        return self.path / SPEC_FILE

    @property
    def path(self) -> Path:
        return Path(self.directory)

    def save(self) -> None:
        """Write state.json atomically: a reader never sees half a file."""
        write_json_atomic(self.path / STATE_FILE, asdict(self))

    def ranked_trials(self) -> list[TrialRecord]:
        """Completed trials, best objective first (guard-flagged ones included)."""
        done = [
            t
            for t in self.trials.values()
            if t.status == "completed" and t.objective(self.objective_metric) is not None
        ]
        sign = -1 if self.objective_mode == "max" else 1
        # ties go by trial id, so the order is the same after state.json is read back
        return sorted(
            done, key=lambda t: (sign * (t.objective(self.objective_metric) or 0.0), t.trial_id)
        )

    def device_hours(self) -> float:
        """Device-hours every trial used (GPUs, or CPUs, held x wall time), as last reported."""
        return sum(t.metrics.get(COST_DEVICE_SECONDS, 0.0) for t in self.trials.values()) / 3600

    def gain_per_device_hour(self) -> float | None:
        """The best trial's objective gain over the base model, per device-hour of the sweep."""
        best, hours = self.best_trial(), self.device_hours()
        base = self.base_metrics.get(self.objective_metric)
        value = best.objective(self.objective_metric) if best else None
        if value is None or base is None or hours <= 0:
            return None
        sign = 1 if self.objective_mode == "max" else -1
        return sign * (value - base) / hours

    def best_trial(self) -> TrialRecord | None:
        """The best completed trial that no guard flagged; once finalists were re-scored on the
        full benchmark sets, only a finalist can be best. With several objectives, the trial of
        the Pareto front that ``pick`` names: the knee, or the best on the first objective."""
        eligible = self.eligible_trials()
        if not eligible or not self.multi_objective:
            return eligible[0] if eligible else None
        front = self.front()
        if self.pick == "first":
            return front[0]
        points = [self.point(t) for t in front]
        return front[knee(points, list(range(len(front))))]

    def eligible_trials(self) -> list[TrialRecord]:
        """The trials best_trial picks from, best first on the first objective."""
        eligible = [t for t in self.ranked_trials() if not t.guard]
        if any(t.finalist for t in self.trials.values()):
            eligible = [t for t in eligible if t.finalist]
        return eligible

    def front(self) -> list[TrialRecord]:
        """The eligible trials no other eligible trial dominates on every objective, best first
        on the first objective (with one objective: the best, and any tie)."""
        eligible = self.eligible_trials()
        points = [self.point(t) for t in eligible]
        return [eligible[i] for i in pareto_front(points)]

    def point(self, record: TrialRecord) -> tuple[float | None, ...]:
        """A trial's objectives as losses (lower is better), the first one as best ranks it."""
        metrics = {**record.metrics, self.objective_metric: record.objective(self.objective_metric)}
        return losses(self.goals, {k: v for k, v in metrics.items() if v is not None})


def disk_usage(directory: Path) -> dict[str, int]:
    """Bytes a sweep takes on disk: in all, and in Ray's trial checkpoints (checkpoint_*), the
    final adapters and the prepared data."""

    def size(*paths: Path) -> int:
        files = (f for p in paths for f in ([p] if p.is_file() else p.rglob("*")))
        return sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())

    checkpoints = [p for p in (directory / "ray").rglob("checkpoint_*") if p.is_dir()]
    return {
        "total": size(directory),
        "checkpoints": size(*checkpoints),
        "adapters": size(directory / "adapters"),
        "data": size(directory / "data"),
    }


def restores(directory: Path) -> list[Restore]:
    """Every restart of a trial from a checkpoint: trial_id, checkpoint, step, skipped (damaged
    checkpoints passed over, each with its problem) and unrecorded (newer ones passed over because
    the driver never recorded their reports)."""
    path = directory / RESTORES_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def sweep_directory(state_dir: Path, name: str) -> Path:
    """The sweep's directory; the name is checked so it cannot escape state_dir."""
    check_safe_name(name, what="sweep name")
    root = state_dir.resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise ConfigError(f"sweep name {name!r} escapes {root}")
    return path


def load_state(sweep: str, *, state_dir: Path) -> SweepState:
    """A sweep's state, by name (under state_dir) or by the path of its directory."""
    candidate = Path(sweep)
    directory = (
        candidate if (candidate / STATE_FILE).is_file() else sweep_directory(state_dir, sweep)
    )
    path = directory / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no sweep {sweep!r}: {path} does not exist")
    raw = json.loads(path.read_text())
    raw["trials"] = {k: TrialRecord(**v) for k, v in raw["trials"].items()}
    return SweepState(**raw)


def list_sweeps(state_dir: Path) -> list[str]:
    if not state_dir.is_dir():
        return []
    return sorted(p.parent.name for p in state_dir.glob(f"*/{STATE_FILE}"))


def study_storage(config: SweepConfig, sweep_dir: Path) -> str:
    """search.storage (PostgreSQL for a cluster), else sqlite in the sweep's directory."""
    return config.search.storage or f"sqlite:///{sweep_dir / 'optuna.db'}"
