"""The only module that imports ray: the Tuner, the searcher, the scheduler and the trainable.

Each trial runs in a fresh worker process (``reuse_actors=False``), reports every rung with a
checkpoint, and restarts from its last checkpoint when its worker dies.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps._storage import filesystem_and_path, is_local, storage_for
from sweeps.config import AshaConfig, SweepConfig
from sweeps.recorder import SweepRecorder
from sweeps.space import define_by_run, grid_values, trial_hyperparameters
from sweeps.state import FAULTS_DIR, RESTORES_FILE, STATE_FILE, TERMINAL, WORK_DIR, study_storage

FINAL_KEY = "final_rung"
RUNG = "rung"  # the trial's own rung count: ASHA's time and Optuna's step (Ray's
# training_iteration runs ahead of it when a restart falls back to an older checkpoint)


class PruneAwareOptunaSearch(OptunaSearch):
    """Tell Optuna PRUNED, not COMPLETE, for trials the scheduler stopped before their last rung.

    Ray's OptunaSearch reports any trial with a result as COMPLETE with its last (truncated) value,
    so TPE would learn from early-rung values as if they were final (see DESIGN.md). The trainable
    marks its last rung with ``final_rung=1``; a trial that ends without it was stopped early.
    Ray reports every rung to ``on_trial_result`` except the one on which the scheduler returns
    STOP (tune_controller skips the searcher then, also at ASHA's max_t), so the last rung is
    reported here first: every trial's intermediate values are complete.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reported_step: dict[str, int] = {}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Report the rung's value at the rung's step, once (a restart may replay rungs)."""
        step = int(result[RUNG])
        done = trial_id in self._completed_trials or trial_id not in self._ot_trials
        if done or step <= self._reported_step.get(trial_id, 0) or self._stored(trial_id, step):
            return
        self._ot_trials[trial_id].report(float(result[self.metric]), step)
        self._reported_step[trial_id] = step

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if self._told_before(trial_id):  # ended before a driver crash, resumed from older state
            self._completed_trials.add(trial_id)
            return
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        ot_trial = self._ot_trials[trial_id]
        step = int(result[RUNG]) if result else -1
        unreported = self._reported_step.get(trial_id) != step
        if result is not None and not error and self.metric in result and unreported:
            ot_trial.report(float(result[self.metric]), step)
        if result is None or error or result.get(FINAL_KEY):
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        assert self._ot_study is not None  # set up in __init__ (the space is given)
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """A new trial; after a driver crash, first the study trial asked just before the crash
        (RUNNING, but held by no Ray trial), so the study never keeps an orphan."""
        if trial_id not in self._ot_trials and self._ot_study is not None:
            orphan = self._orphan()
            if orphan is not None:
                self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, orphan)
        suggested: dict[str, Any] | None = super().suggest(trial_id)
        return suggested

    def _orphan(self) -> int | None:
        assert self._ot_study is not None
        held = {t._trial_id for t in self._ot_trials.values()}
        running = self._ot_study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
        )
        return next((t._trial_id for t in running if t._trial_id not in held), None)

    def _stored(self, trial_id: str, step: int) -> bool:
        """Whether the study already holds this rung's value (a resumed driver's searcher state
        can be older than the study)."""
        stored = self._stored_trial(trial_id)
        return stored is not None and step in stored.intermediate_values

    def _told_before(self, trial_id: str) -> bool:
        """Whether the study already holds this trial as finished (its storage outlives us)."""
        if trial_id in self._completed_trials:
            return False
        stored = self._stored_trial(trial_id)
        return stored is not None and stored.state.is_finished()

    def _stored_trial(self, trial_id: str) -> optuna.trial.FrozenTrial | None:
        """The study's own record of a Ray trial's Optuna trial, read from its storage."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or self._ot_study is None:
            return None
        return self._ot_study._storage.get_trial(ot_trial._trial_id)


def build_searcher(
    config: SweepConfig, *, metric: str, mode: str, storage_url: str, study_name: str
) -> ConcurrencyLimiter:
    """Optuna (tpe | random | grid) over the YAML space, persisted in the sweep's sqlite study."""
    search = config.search
    sampler: optuna.samplers.BaseSampler
    if search.algorithm == "random":
        sampler = optuna.samplers.RandomSampler(seed=search.seed)
    elif search.algorithm == "grid":
        sampler = optuna.samplers.GridSampler(grid_values(config), seed=search.seed)
    else:
        startup = min(10, max(2, search.num_samples // 3))
        sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=startup)
    searcher = PruneAwareOptunaSearch(
        space=define_by_run(config),
        metric=metric,
        mode=mode,
        sampler=sampler,
        storage=optuna.storages.RDBStorage(storage_url),
        study_name=study_name,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)


def build_scheduler(config: SweepConfig, *, max_rungs: int) -> ASHAScheduler | FIFOScheduler:
    """ASHA on the trials' rungs, or no early stopping."""
    scheduler = config.scheduler
    if not isinstance(scheduler, AshaConfig):
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=RUNG,
        max_t=max(max_rungs, 1),
        grace_period=min(scheduler.grace_period, max(max_rungs, 1)),
        reduction_factor=scheduler.reduction_factor,
    )


def lora_trainable(
    config: dict[str, Any], spec: Any, sweep_dir: str | None = None, experiment: str | None = None
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
    if recorded.get("status") in TERMINAL:
        return
    _quiet_progress_bars()
    faults = Path(sweep_dir) / FAULTS_DIR if sweep_dir is not None else None
    if faults is not None and (faults / f"{trial_id}.txt").is_file():
        raise TrialFault((faults / f"{trial_id}.txt").read_text())  # it would only recur
    workdir = _fresh_workdir(sweep_dir, trial_id)
    try:
        try:
            logged = None if sweep_dir is None else int(recorded.get("last_step", -1))
            resume = restore_directory(tune.get_checkpoint(), sweep_dir=sweep_dir,
                                       experiment=experiment, trial_id=trial_id,
                                       into=workdir / "restore", logged_step=logged)  # fmt: skip
        except TrialFault as exc:
            _record_fault(faults, trial_id, str(exc))
            raise
        _train_trial(config, spec, workdir=workdir, resume=resume, faults=faults, trial_id=trial_id)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _train_trial(
    config: dict[str, Any], spec: Any, *, workdir: Path, resume: Path | None,
    faults: Path | None, trial_id: str,
) -> None:  # fmt: skip
    """Train, reporting each rung's checkpoint to Ray; a fault that would recur is recorded."""
    from trainers.lora_trial import run_lora_trial

    def report(metrics: dict[str, float], checkpoint_dir: Path) -> None:
        tune.report({**metrics, **_placement()},
                    checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))  # fmt: skip
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # Ray has persisted it to storage

    try:
        run_lora_trial(spec, trial_hyperparameters(config), report=report,
                       workdir=workdir / "run", resume_from=resume)  # fmt: skip
    except (FloatingPointError, MemoryError, RuntimeError) as exc:
        reason = _deterministic_fault(exc)
        if reason is None or faults is None:
            raise
        _record_fault(faults, trial_id, reason)
        raise TrialFault(reason) from exc


def _placement() -> dict[str, str]:
    """Where the trial runs: its Ray node, and the GPUs Ray gave it (CUDA_VISIBLE_DEVICES)."""
    return {"trial/node_id": ray.get_runtime_context().get_node_id(),
            "trial/cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}  # fmt: skip


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
    checkpoint: Any, *, sweep_dir: str | None, trial_id: str, into: Path,
    experiment: str | None = None, logged_step: int | None = None,
) -> Path | None:  # fmt: skip
    """A local copy of the trial's newest intact checkpoint (None: it has none, a fresh start).

    Candidates are every checkpoint in the trial's storage directory, newest first: Ray's latest,
    the older ones it kept, and a newer one it had not yet registered when the worker died (Ray
    registers a reported checkpoint in a second round trip to the worker; the worker had written
    it whole before reporting, which its manifest shows). One past ``logged_step`` (the last rung
    the driver recorded) is passed over: its report never reached MLflow, so its rungs are trained
    and logged again. A damaged one (cut short, truncated, altered) is skipped for the one before
    it. The restore is recorded in restores.jsonl; with none intact the trial fails rather than
    silently training from zero."""
    from trainers.lora_trial import STATE_FILE as TRAINER_STATE
    from trainers.lora_trial import checkpoint_problem

    skipped: list[dict[str, str]] = []
    unrecorded: list[str] = []
    candidates = _stored_checkpoints(checkpoint, experiment=experiment)
    for candidate in candidates:
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
        step = json.loads((local / TRAINER_STATE).read_text())["progress"]["step"]
        if logged_step is not None and step > logged_step:
            shutil.rmtree(local, ignore_errors=True)
            unrecorded.append(name)
            continue
        _record_restore(sweep_dir, {"trial_id": trial_id, "checkpoint": name, "step": step,
                                    "skipped": skipped, "unrecorded": unrecorded})  # fmt: skip
        return local
    if not skipped:  # no checkpoint, or only ones whose reports the driver never recorded
        return None
    damaged = "; ".join(f"{s['checkpoint']}: {s['problem']}" for s in skipped)
    raise TrialFault(f"no intact checkpoint to restart from ({damaged}); not restarting from zero")


def _stored_checkpoints(checkpoint: Any, *, experiment: str | None) -> list[Any]:
    """Every checkpoint_* directory of the trial, newest first (its storage directory is the
    parent of Ray's latest checkpoint, or, before Ray registered one, <experiment>/<trial>)."""
    import pyarrow.fs

    if checkpoint is not None:
        filesystem, parent = checkpoint.filesystem, checkpoint.path.rstrip("/").rsplit("/", 1)[0]
    elif experiment is not None:
        filesystem, root = filesystem_and_path(experiment)
        parent = f"{root}/{Path(tune.get_context().get_trial_dir()).name}"
    else:
        return []
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(parent, allow_not_found=True))
    names = sorted((i.base_name for i in infos if i.type == pyarrow.fs.FileType.Directory
                    and i.base_name.startswith("checkpoint_")), reverse=True)  # fmt: skip
    return [tune.Checkpoint(f"{parent}/{name}", filesystem) for name in names]


def _record_restore(sweep_dir: str | None, entry: dict[str, Any]) -> None:
    if sweep_dir is None:
        return
    with (Path(sweep_dir) / RESTORES_FILE).open("a") as handle:  # one short line: one write
        handle.write(json.dumps(entry) + "\n")


def _record_fault(faults: Path | None, trial_id: str, reason: str) -> None:
    if faults is not None:
        faults.mkdir(parents=True, exist_ok=True)
        (faults / f"{trial_id}.txt").write_text(reason)


_DRIVER: dict[str, SweepRecorder] = {}  # the recorder of the sweep this driver runs


class TrialFault(RuntimeError):
    """A trial fault that a restart would only repeat (NaN/inf loss, out of memory): the trial
    ends as failed with this reason, and Ray's restarts do not train again."""


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


def _recorded_trial(sweep_dir: str | None, trial_id: str) -> dict[str, Any]:
    """The driver's record of the trial in state.json ({}: none yet, or no sweep directory)."""
    state = Path(sweep_dir) / STATE_FILE if sweep_dir is not None else None
    if state is None or not state.is_file():
        return {}
    trial: dict[str, Any] = json.loads(state.read_text()).get("trials", {}).get(trial_id) or {}
    return trial


class RecorderCallback(tune.Callback):
    """Forwards Ray's trial events to the recorder (the single MLflow writer).

    Ray pickles callbacks into the experiment state; the recorder (MLflow client, console) stays
    out of it. A restored callback (``sweep resume``) uses the recorder of the resuming driver.
    """

    def __init__(self, recorder: SweepRecorder) -> None:
        _DRIVER["recorder"] = recorder

    @property
    def recorder(self) -> SweepRecorder:
        return _DRIVER["recorder"]

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        pass

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.recorder.trial_started(trial.trial_id, dict(trial.config))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self.recorder.trial_result(trial.trial_id, result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.recorder.trial_ended(
            trial.trial_id, result=trial.last_result, checkpoint=_checkpoint_path(trial)
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error = _error_line(trial)
        self.recorder.trial_ended(
            trial.trial_id,
            result=trial.last_result,
            checkpoint=_checkpoint_path(trial),
            error=error,
        )


def _checkpoint_path(trial: Any) -> Path | None:
    """The trial's latest checkpoint as a local directory (copied from remote storage into
    <sweep>/work/final/<trial>, which the sweep's end clears)."""
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    if is_local(checkpoint.filesystem):
        return Path(checkpoint.path)
    target = _DRIVER["recorder"].state.path / WORK_DIR / "final" / trial.trial_id
    shutil.rmtree(target, ignore_errors=True)
    return Path(checkpoint.to_directory(str(target)))


def _error_line(trial: Any) -> str:
    """The last line of the trial's traceback: the reason a failed run records."""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        if lines:
            return lines[-1][:500]
    return "trial failed (no error file)"


def start_ray(*, address: str | None, num_cpus: int | None, num_gpus: int | None) -> bool:
    """Start (or join) Ray; returns True when this call started it, so it should stop it too."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": "ERROR",
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
    return True


def stop_ray() -> None:
    ray.shutdown()


def _save_state_often() -> None:
    """Ray saves the experiment state at most every ~10 s by default; a driver killed in between
    would resume from state older than the sweep's own (trials re-suggested, Optuna trials asked
    twice). Saving it at every step of the loop costs little at sweep scale."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")


def run_tuner(
    config: SweepConfig,
    *,
    spec: Any,
    recorder: SweepRecorder,
    sweep_dir: Path,
    metric: str,
    mode: str,
    max_rungs: int,
    num_samples: int,
) -> Any:
    """Run the Tune experiment to the end; returns Ray's ResultGrid."""
    _save_state_often()
    searcher = build_searcher(
        config,
        metric=metric,
        mode=mode,
        storage_url=study_storage(config, sweep_dir),
        study_name=sweep_dir.name,
    )
    trainable = _trainable(config, spec=spec, sweep_dir=sweep_dir)
    storage_path, filesystem = storage_for(checkpoint_root(config, sweep_dir))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=searcher,
            num_samples=num_samples,
            scheduler=build_scheduler(config, max_rungs=max_rungs),
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            verbose=0,
            callbacks=[RecorderCallback(recorder)],
            checkpoint_config=checkpoint_config(config, metric=metric, mode=mode),
            failure_config=tune.FailureConfig(max_failures=config.recovery.max_retries),
        ),
    )
    return tuner.fit()


def checkpoint_config(config: SweepConfig, *, metric: str, mode: str) -> tune.CheckpointConfig:
    """Keep k checkpoints per trial: the most recent, or the best by the objective. Ray always
    keeps the latest as well, which a restart resumes from."""
    recovery = config.recovery
    if recovery.keep_best_by == "objective":
        return tune.CheckpointConfig(num_to_keep=recovery.keep_checkpoints,
                                     checkpoint_score_attribute=metric,
                                     checkpoint_score_order=mode)  # fmt: skip
    return tune.CheckpointConfig(num_to_keep=recovery.keep_checkpoints)


EXPERIMENT = "tune"  # the Tune experiment's name: its directory under checkpoint_root


def checkpoint_root(config: SweepConfig, sweep_dir: Path) -> str:
    """Ray's storage for the sweep: tracking.checkpoint_storage/<sweep> (a shared path or a URI),
    else <sweep>/ray."""
    shared = config.tracking.checkpoint_storage
    return f"{shared.rstrip('/')}/{sweep_dir.name}" if shared else str(sweep_dir / "ray")


def experiment_path(config: SweepConfig, sweep_dir: Path) -> str:
    """The Tune experiment's directory (or URI): what a trial's checkpoints and resume use."""
    return f"{checkpoint_root(config, sweep_dir)}/{EXPERIMENT}"


def _trainable(config: SweepConfig, *, spec: Any, sweep_dir: Path) -> Any:
    return tune.with_resources(
        tune.with_parameters(
            lora_trainable,
            spec=spec,
            sweep_dir=str(sweep_dir),
            experiment=experiment_path(config, sweep_dir),
        ),
        {"cpu": config.resources.cpu, "gpu": config.resources.gpu},
    )


def every_trial_ended(grid: Any) -> bool:
    """Whether every trial Ray knows of ended (False after Ctrl-C stopped fit() early)."""
    return bool(grid.num_terminated + grid.num_errors == len(grid))


def can_resume(config: SweepConfig, sweep_dir: Path) -> bool:
    path, filesystem = storage_for(experiment_path(config, sweep_dir))
    return bool(tune.Tuner.can_restore(path, storage_filesystem=filesystem))


def resume_tuner(
    config: SweepConfig, *, spec: Any, recorder: SweepRecorder, sweep_dir: Path
) -> Any:
    """Continue the Tune experiment from its saved state: unfinished trials restart from their
    last checkpoint; the searcher (and its Optuna study) carries on where it stopped."""
    _DRIVER["recorder"] = recorder
    _save_state_often()
    path, filesystem = storage_for(experiment_path(config, sweep_dir))
    tuner = tune.Tuner.restore(
        path, trainable=_trainable(config, spec=spec, sweep_dir=sweep_dir),
        resume_unfinished=True, resume_errored=True, storage_filesystem=filesystem,
    )  # fmt: skip
    return tuner.fit()
