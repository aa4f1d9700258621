"""What the driver does when Ray says a trial started, reported a rung, or ended.

Plain Python: the Ray callback (sweeps/tune/tuner.py) calls these methods, which keep state.json,
MLflow (through SweepTracker) and the live table in step. Every metric step reaches MLflow once:
a step at or below the last one logged for that trial is skipped (a restarted trial replays none).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evals.metric_keys import (
    FINAL_RUNG,
    RUNG,
    STEP,
    TRIAL_CUDA_VISIBLE_DEVICES,
    TRIAL_NODE_ID,
    is_logged,
)
from sweeps.config import KNOBS, RATIO_KNOBS, ratio_name
from sweeps.tracking.provenance import param_text
from sweeps.tracking.state import TERMINAL, Restore, SweepState, TrialRecord, restores

if (
    TYPE_CHECKING
):  # typing only: mlflow is imported by sweeps/tracking/mlflow_facade.py alone, at run time
    from sweeps.tracking.mlflow_facade import SweepTracker

Result = Mapping[str, object]  # a trial's report through Ray: its metrics, Ray's own entries


class Display(Protocol):
    def refresh(self, state: SweepState, record: TrialRecord, what: str) -> None: ...


def trial_params(config: Mapping[str, object]) -> dict[str, object]:
    """The sampled hyperparameters of a trial, as its child run's params."""
    params = {k: config[k] for k in (*KNOBS, *map(ratio_name, RATIO_KNOBS)) if k in config}
    return params


# the knobs a trial's MLflow run name shows, after its number and id: what tells trials apart
NAMED_KNOBS = {"learning_rate": "lr", "lora_r": "r"}


def run_name(record: TrialRecord) -> str:
    """``#3 f65278a5 lr 3.6e-03 r 8``: distinct in its first characters, and saying something
    (MLflow's run table cuts names short)."""
    knobs = [
        f"{short} {_written(record.params[knob])}"
        for knob, short in NAMED_KNOBS.items()
        if knob in record.params
    ]
    return " ".join([record.name, *knobs])


def _written(value: object) -> str:
    return param_text(value) if isinstance(value, float) else str(value)


def logged_metrics(result: Result) -> dict[str, float]:
    """The result's numbers the sweep logs (``evals.metric_keys.is_logged``)."""
    return {k: float(v) for k, v in result.items() if is_logged(k) and isinstance(v, (int, float))}


def whole(value: object) -> int:
    """A count from a result (Ray passes the trial's floats through: ``3.0``)."""
    if not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return int(value)


class SweepRecorder:
    def __init__(
        self,
        state: SweepState,
        tracker: SweepTracker,
        display: Display,
        *,
        logged_generations: int = 8,
        poll: Callable[[], object] | None = None,
        remove_finished_checkpoints: bool = False,
        study_number: Callable[[str], int | None] = lambda trial_id: None,
    ) -> None:
        self.state = state
        self.study_number = study_number  # a Ray trial's study trial number, once suggested
        self.remove_finished_checkpoints = remove_finished_checkpoints
        self.tracker = tracker
        self.display = display
        self.logged_generations = logged_generations
        self.poll = poll or (lambda: None)  # at each event: e.g. record the base model's scores

    def trial_started(self, trial_id: str, config: Mapping[str, object]) -> None:
        self.poll()
        if trial_id in self.state.trials:  # a restarted trial keeps its child run
            record = self.state.trials[trial_id]
            if record.status in TERMINAL:  # ended before a driver crash: it is not run again
                return
            record.status = "running"
        else:
            params = trial_params(config)
            record = TrialRecord(
                trial_id=trial_id, run_id="", params=params, number=self.study_number(trial_id)
            )
            record.run_id = self.tracker.start_trial(
                self.state.parent_run_id,
                sweep=self.state.name,
                trial_id=trial_id,
                params=params,
                name=run_name(record),
            )
            self.state.trials[trial_id] = record
        self.state.save()
        self.display.refresh(self.state, record, "started")

    def trial_result(self, trial_id: str, result: Result) -> None:
        self.poll()
        record = self.state.trials[trial_id]
        step = whole(result[STEP])
        if step <= record.last_step:
            return
        metrics = logged_metrics(result)
        self.tracker.log_metrics(record.run_id, metrics, step=step)
        where = placement(result)
        if where != record.placement:  # its first rung, or a restart elsewhere
            record.placement = where
            self.tracker.set_tags(record.run_id, {f"placement.{k}": v for k, v in where.items()})
        record.last_step, record.metrics, record.rungs = step, metrics, whole(result.get(RUNG, 0))
        self.state.save()
        self.display.refresh(self.state, record, f"rung {record.rungs}")

    def trial_ended(
        self,
        trial_id: str,
        *,
        result: Result | None,
        checkpoint: Path | None,
        error: str | None = None,
    ) -> None:
        self.poll()
        record = self.state.trials.get(trial_id)
        if record is None or record.status in TERMINAL:
            return
        if error is not None:
            record.status, record.error = "failed", error
        else:
            record.status = "completed" if result and result.get(FINAL_RUNG) else "pruned"
        adapter = self._keep_adapter(trial_id, checkpoint)
        record.adapter_path = str(adapter) if adapter else None
        restarts = [r for r in restores(self.state.path) if r["trial_id"] == trial_id]
        if restarts:
            self.tracker.set_tags(record.run_id, restart_tags(restarts))
        self.tracker.end_trial(
            record.run_id,
            status=record.status,
            reason=error,
            adapter_dir=adapter,
            predictions=_predictions(checkpoint),
            logged_generations=self.logged_generations,
            artifact_dirs=_benchmark_outputs(checkpoint),
        )
        self.state.save()
        self.display.refresh(self.state, record, record.status)

    def removes_checkpoints_of(self, trial_id: str) -> bool:
        """Whether an ended trial's checkpoints go: it completed or was stopped early (it never
        runs again; its adapter is kept), and the sweep does not keep them."""
        record = self.state.trials.get(trial_id)
        return (
            self.remove_finished_checkpoints
            and record is not None
            and record.status in ("completed", "pruned")
        )

    def checkpoints_removed(self, trial_id: str, *, freed: int) -> None:
        """Record the bytes an ended trial's removed checkpoints took (the summary's disk line)."""
        record = self.state.trials[trial_id]
        record.checkpoints_freed += freed
        self.state.save()

    def _keep_adapter(self, trial_id: str, checkpoint: Path | None) -> Path | None:
        """Copy the trial's last adapter out of Ray's checkpoints into adapters/<trial>/."""
        if checkpoint is None or not (checkpoint / "adapter").is_dir():
            return None
        target = self.state.path / "adapters" / trial_id
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(checkpoint / "adapter", target)
        return target


def catch_up_logged_steps(state: SweepState, tracker: SweepTracker) -> list[str]:
    """Before a resume: take each unfinished trial's last logged step from MLflow, where a driver
    killed between logging a rung and saving state.json left state.json one rung behind. The
    restart then resumes from that rung's checkpoint, and the rung is not logged a second time."""
    behind = []
    for trial_id, record in state.trials.items():
        if record.status in TERMINAL:
            continue
        step = tracker.last_logged_step(record.run_id)
        if step > record.last_step:
            record.last_step = step
            behind.append(trial_id)
    if behind:
        state.save()
    return behind


def forget_lost_trials(state: SweepState, tracker: SweepTracker) -> list[str]:
    """After a resumed sweep's trials all ended: drop what a driver killed at the wrong moment
    left behind, so each trial has exactly one child run.

    A trial created in the instant between Ray's saves of its experiment state was never run
    again by Ray (it suggested another one instead): its record still says running, and it never
    reported. A child run whose record was not saved before the kill has no record at all. Both
    hold no metrics; their runs are deleted."""
    lost = [k for k, t in state.trials.items() if t.status == "running" and t.last_step < 0]
    for trial_id in lost:
        tracker.delete_run(state.trials.pop(trial_id).run_id)
    kept = {t.run_id for t in state.trials.values()}
    kept.update(run for runs in state.reruns.values() for run in runs)  # failed, then re-run
    for run_id in tracker.child_trial_runs(state.parent_run_id):
        if run_id not in kept:
            tracker.delete_run(run_id)
            lost.append(run_id)
    if lost:
        state.save()
    return lost


def placement(result: Result) -> dict[str, str]:
    """The node (Ray's id, its IP and host name) and the GPUs a result came from."""
    return {
        "node_id": str(result.get(TRIAL_NODE_ID, "")),
        "node_ip": str(result.get("node_ip", "")),
        "hostname": str(result.get("hostname", "")),
        "cuda_visible_devices": str(result.get(TRIAL_CUDA_VISIBLE_DEVICES, "")),
    }


def restart_tags(restarts: Sequence[Restore]) -> dict[str, str]:
    """``restarts``, the steps resumed from, and the damaged checkpoints passed over."""
    skipped = [f"{s['checkpoint']}: {s['problem']}" for r in restarts for s in r["skipped"]]
    tags = {
        "restarts": str(len(restarts)),
        "restarts.from_steps": ",".join(str(r["step"]) for r in restarts),
    }
    if skipped:
        tags["restarts.damaged_checkpoints"] = "; ".join(skipped)[:5000]
    return tags


def _predictions(checkpoint: Path | None) -> list[dict[str, object]]:
    if checkpoint is None or not (checkpoint / "predictions.jsonl").is_file():
        return []
    lines = (checkpoint / "predictions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _benchmark_outputs(checkpoint: Path | None) -> dict[str, Path]:
    """The proxy benchmarks' per-sample outputs, saved in the last checkpoint."""
    if checkpoint is None or not (checkpoint / "benchmarks").is_dir():
        return {}
    return {"benchmarks": checkpoint / "benchmarks"}
