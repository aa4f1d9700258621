"""One trial in its Ray worker: train, report each rung with a checkpoint, restart from the newest
intact checkpoint when the worker died, and end a fault that a restart would only repeat.

Each trial runs in a fresh worker process (the tuner sets ``reuse_actors=False``); when the worker
dies, Ray starts the trial again in a new one, which resumes from the trial's last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pyarrow.fs
import ray
from ray import tune

from evals.metric_keys import TRIAL_CUDA_VISIBLE_DEVICES, TRIAL_NODE_ID
from sweeps.tracking.state import (
    FAULTS_DIR,
    RESTORES_FILE,
    STATE_FILE,
    TERMINAL,
    WORK_DIR,
    Restore,
    SkippedCheckpoint,
    TrialRecord,
    load_state,
)
from sweeps.tracking.storage import filesystem_and_path
from trainers.config import Hyperparameters
from trainers.spec import TrialSpec


class TrialFault(RuntimeError):
    """A trial fault that a restart would only repeat (NaN/inf loss, out of memory): the trial
    ends as failed with this reason, and Ray's restarts do not train again."""


def lora_trainable(
    config: Mapping[str, object],
    spec: TrialSpec,
    sweep_dir: str | None = None,
    experiment: str | None = None,
) -> None:
    """One trial, in its own worker process: resume from Ray's checkpoint if there is one.

    After a driver crash, Ray's experiment state can be a few seconds older than the sweep's own
    state.json; a trial the sweep already recorded as ended is not run again, and a restart
    resumes from no checkpoint newer than the last rung the driver recorded. Checkpoints are
    written, and restored, under <sweep>/work/<trial>: what a SIGKILLed worker leaves there is
    cleared by the next attempt (and by the end of the sweep), never left in /tmp.
    """
    trial_id = tune.get_context().get_trial_id()
    recorded = _recorded_trial(sweep_dir, trial_id)
    if recorded is not None and recorded.status in TERMINAL:
        return
    hparams = Hyperparameters.from_trial(config, training=spec.training)  # Ray's dict, typed once
    _quiet_progress_bars()
    faults = Path(sweep_dir) / FAULTS_DIR if sweep_dir is not None else None
    if faults is not None and (faults / f"{trial_id}.txt").is_file():
        raise TrialFault((faults / f"{trial_id}.txt").read_text())  # it would only recur
    workdir = _fresh_workdir(sweep_dir, trial_id)
    try:
        try:
            logged = None if sweep_dir is None else (recorded.last_step if recorded else -1)
            resume = restore_directory(
                tune.get_checkpoint(),
                sweep_dir=sweep_dir,
                experiment=experiment,
                trial_id=trial_id,
                into=workdir / "restore",
                logged_step=logged,
            )
        except TrialFault as exc:
            _record_fault(faults, trial_id, str(exc))
            raise
        _train_trial(
            hparams, spec, workdir=workdir, resume=resume, faults=faults, trial_id=trial_id
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _train_trial(
    hparams: Hyperparameters,
    spec: TrialSpec,
    *,
    workdir: Path,
    resume: Path | None,
    faults: Path | None,
    trial_id: str,
) -> None:
    """Train, reporting each rung's checkpoint to Ray; a fault that would recur is recorded."""
    from trainers.lora_trial import run_lora_trial

    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        tune.report(
            {**metrics, **_placement()},
            checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)),
        )
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # Ray has persisted it to storage

    try:
        run_lora_trial(spec, hparams, report=report, workdir=workdir / "run", resume_from=resume)
    except (FloatingPointError, MemoryError, RuntimeError) as exc:
        reason = _deterministic_fault(exc)
        if reason is None or faults is None:
            raise
        _record_fault(faults, trial_id, reason)
        raise TrialFault(reason) from exc


def _placement() -> dict[str, str]:
    """Where the trial runs: its Ray node, and the GPUs Ray gave it (CUDA_VISIBLE_DEVICES)."""
    return {
        TRIAL_NODE_ID: ray.get_runtime_context().get_node_id(),
        TRIAL_CUDA_VISIBLE_DEVICES: os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


def _fresh_workdir(sweep_dir: str | None, trial_id: str) -> Path:
    if sweep_dir is None:
        return Path(tempfile.mkdtemp(prefix="lora-trial-"))
    workdir = Path(sweep_dir) / WORK_DIR / trial_id
    shutil.rmtree(workdir, ignore_errors=True)  # a killed attempt's leftovers
    workdir.mkdir(parents=True)
    return workdir


def _quiet_progress_bars() -> None:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def restore_directory(
    checkpoint: tune.Checkpoint | None,
    *,
    sweep_dir: str | None,
    trial_id: str,
    into: Path,
    experiment: str | None = None,
    logged_step: int | None = None,
) -> Path | None:
    """A local copy of the trial's newest intact checkpoint (None: it has none, a fresh start).

    Candidates are every checkpoint in the trial's storage directory, newest first: Ray's latest,
    the older ones it kept, and a newer one it had not yet registered when the worker died (Ray
    registers a reported checkpoint in a second round trip to the worker; the worker had written
    it whole before reporting, which its manifest shows). One past ``logged_step`` (the last rung
    the driver recorded) is passed over: its report never reached MLflow, so its rungs are trained
    and logged again. A damaged one (cut short, truncated, altered) is skipped for the one before
    it. The restore is recorded in restores.jsonl; with none intact the trial fails rather than
    silently training from zero."""
    from trainers.checkpoint import checkpoint_problem, checkpoint_step

    skipped: list[SkippedCheckpoint] = []
    unrecorded: list[str] = []
    for candidate in _stored_checkpoints(checkpoint, experiment=experiment):
        name = Path(candidate.path).name
        try:
            local = Path(candidate.to_directory(str(into / name)))
        except Exception as exc:  # gone or unreadable (any filesystem error): try the one before
            skipped.append({"checkpoint": name, "problem": f"unreadable: {exc}"[:300]})
            continue
        problem = checkpoint_problem(local)
        if problem is not None:
            shutil.rmtree(local, ignore_errors=True)
            skipped.append({"checkpoint": name, "problem": problem})
            continue
        step = checkpoint_step(local)
        if logged_step is not None and step > logged_step:
            shutil.rmtree(local, ignore_errors=True)
            unrecorded.append(name)
            continue
        _record_restore(
            sweep_dir,
            {
                "trial_id": trial_id,
                "checkpoint": name,
                "step": step,
                "skipped": skipped,
                "unrecorded": unrecorded,
            },
        )
        return local
    if not skipped:  # no checkpoint, or only ones whose reports the driver never recorded
        return None
    damaged = "; ".join(f"{s['checkpoint']}: {s['problem']}" for s in skipped)
    raise TrialFault(f"no intact checkpoint to restart from ({damaged}); not restarting from zero")


def _stored_checkpoints(
    checkpoint: tune.Checkpoint | None, *, experiment: str | None
) -> list[tune.Checkpoint]:
    """Every checkpoint_* directory of the trial, newest first (its storage directory is the
    parent of Ray's latest checkpoint, or, before Ray registered one, <experiment>/<trial>)."""
    filesystem: pyarrow.fs.FileSystem
    if checkpoint is not None:
        filesystem, parent = checkpoint.filesystem, checkpoint.path.rstrip("/").rsplit("/", 1)[0]
    elif experiment is not None:
        filesystem, root = filesystem_and_path(experiment)
        parent = f"{root}/{Path(tune.get_context().get_trial_dir()).name}"
    else:
        return []
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    names = sorted(
        (
            i.base_name
            for i in infos
            if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint_")
        ),
        reverse=True,
    )
    return [tune.Checkpoint(f"{parent}/{name}", filesystem) for name in names]


def remove_stored_checkpoints(checkpoint: tune.Checkpoint | None) -> int:
    """Remove every checkpoint_* directory of an ended trial (on its storage, local or remote);
    returns the bytes freed. The trial's results and params files stay."""
    freed = 0
    for stored in _stored_checkpoints(checkpoint, experiment=None):
        filesystem = stored.filesystem
        assert filesystem is not None  # a Checkpoint made with one always has one
        files = filesystem.get_file_info(pyarrow.fs.FileSelector(stored.path, recursive=True))
        freed += sum(f.size or 0 for f in files if f.type == pyarrow.fs.FileType.File)
        filesystem.delete_dir(stored.path)
    return freed


def _record_restore(sweep_dir: str | None, entry: Restore) -> None:
    if sweep_dir is None:
        return
    with (Path(sweep_dir) / RESTORES_FILE).open("a") as handle:  # one short line: one write
        handle.write(json.dumps(entry) + "\n")


def _record_fault(faults: Path | None, trial_id: str, reason: str) -> None:
    if faults is not None:
        faults.mkdir(parents=True, exist_ok=True)
        (faults / f"{trial_id}.txt").write_text(reason)


def _deterministic_fault(exc: BaseException) -> str | None:
    """The reason a trial fault would recur on restart, or None (worth a restart)."""
    if isinstance(exc, FloatingPointError):
        return f"{exc} (NaN/inf loss: not retried)"
    name, text = type(exc).__name__, str(exc)
    # CUDA: torch.cuda.OutOfMemoryError ("CUDA out of memory"); CPU: "DefaultCPUAllocator: can't
    # allocate memory" (a RuntimeError); Python: MemoryError
    if (
        isinstance(exc, MemoryError)
        or name == "OutOfMemoryError"
        or any(marker in text for marker in ("out of memory", "can't allocate memory"))
    ):
        return f"out of memory: {text.splitlines()[0][:300] if text else name}"
    return None


def _recorded_trial(sweep_dir: str | None, trial_id: str) -> TrialRecord | None:
    """The driver's record of the trial in state.json (None: none yet, or no sweep directory)."""
    if sweep_dir is None or not (Path(sweep_dir) / STATE_FILE).is_file():
        return None
    return load_state(sweep_dir, state_dir=Path(sweep_dir).parent).trials.get(trial_id)
