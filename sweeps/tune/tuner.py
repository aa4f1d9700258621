"""The Tune experiment: start and stop Ray, run or resume the sweep's trials, and forward Ray's
trial events to the sweep's recorder."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from evals.metric_keys import RUNG
from sweeps.config import AshaConfig, SweepConfig
from sweeps.search.pareto import Goal
from sweeps.tracking.recorder import SweepRecorder
from sweeps.tracking.state import WORK_DIR, study_storage
from sweeps.tracking.storage import is_local, storage_for
from sweeps.tune.context import active, driving
from sweeps.tune.moasha import MultiObjectiveASHA
from sweeps.tune.searcher import build_searcher
from sweeps.tune.trainable import lora_trainable, remove_stored_checkpoints
from trainers.spec import TrialSpec

EXPERIMENT = "tune"  # the Tune experiment's name: its directory under checkpoint_root
# Modules that moved, under the names a sweep saved before the move gave them: Ray's tuner.pkl and
# experiment state pickle a Goal and the storage handler by their module's name at the time.
MOVED_MODULES = {
    "sweeps.pareto": "sweeps.search.pareto",
    "sweeps._storage": "sweeps.tracking.storage",
}


def start_ray(*, address: str | None, num_cpus: int | None, num_gpus: int | None) -> bool:
    """Start (or join) Ray; returns True when this call started it, so it should stop it too."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(
        address=address or None,
        num_cpus=None if address else num_cpus,
        num_gpus=None if address else num_gpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=True,
        logging_level=logging.ERROR,
    )
    return True


def stop_ray() -> None:
    ray.shutdown()


def run_tuner(
    config: SweepConfig,
    *,
    spec: TrialSpec,
    recorder: SweepRecorder,
    sweep_dir: Path,
    goals: Sequence[Goal],
    max_rungs: int,
    num_samples: int,
) -> tune.ResultGrid:
    """Run the Tune experiment to the end; returns Ray's ResultGrid. With several goals, Tune's
    single metric stays unset: the searcher and the scheduler hold the goals."""
    _save_state_often()
    first = goals[0]
    metric, mode = (first.metric, first.mode) if len(goals) == 1 else (None, None)
    searcher = build_searcher(
        config,
        goals=goals,
        storage_url=study_storage(config, sweep_dir),
        study_name=sweep_dir.name,
        experiment=experiment_path(config, sweep_dir),
    )
    storage_path, filesystem = storage_for(checkpoint_root(config, sweep_dir))
    tuner = tune.Tuner(
        _trainable(config, spec=spec, sweep_dir=sweep_dir),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=searcher,
            num_samples=num_samples,
            scheduler=build_scheduler(config, max_rungs=max_rungs, goals=goals),
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            verbose=0,
            callbacks=[RecorderCallback()],
            checkpoint_config=checkpoint_config(config, metric=first.metric, mode=first.mode),
            failure_config=tune.FailureConfig(max_failures=config.recovery.max_retries),
        ),
    )
    with driving(recorder):
        return tuner.fit()


def resume_tuner(
    config: SweepConfig, *, spec: TrialSpec, recorder: SweepRecorder, sweep_dir: Path
) -> tune.ResultGrid:
    """Continue the Tune experiment from its saved state: unfinished trials restart from their
    last checkpoint; the searcher (and its Optuna study) carries on where it stopped."""
    return _fit_restored(config, spec=spec, recorder=recorder, sweep_dir=sweep_dir, rerun=())


def rerun_tuner(
    config: SweepConfig,
    *,
    spec: TrialSpec,
    recorder: SweepRecorder,
    sweep_dir: Path,
    trial_ids: Collection[str],
) -> tune.ResultGrid:
    """Run a finished experiment's errored trials again, from scratch, under their own Ray trial
    ids (Ray's restart_errored); the search tells each one's new study trial how it ended."""
    return _fit_restored(config, spec=spec, recorder=recorder, sweep_dir=sweep_dir, rerun=trial_ids)


def _fit_restored(
    config: SweepConfig,
    *,
    spec: TrialSpec,
    recorder: SweepRecorder,
    sweep_dir: Path,
    rerun: Collection[str],
) -> tune.ResultGrid:
    """The saved Tune experiment restored and run to its end: unfinished trials resume; errored
    ones resume too, unless ``rerun`` names trials to start again from scratch."""
    _save_state_often()
    _find_moved_modules()
    path, filesystem = storage_for(experiment_path(config, sweep_dir))
    with driving(recorder, rerunning=rerun):  # set before Ray restores the callback and searcher
        tuner = tune.Tuner.restore(
            path,
            trainable=_trainable(config, spec=spec, sweep_dir=sweep_dir),
            resume_unfinished=True,
            resume_errored=not rerun,
            restart_errored=bool(rerun),
            storage_filesystem=filesystem,
        )
        return tuner.fit()


def _find_moved_modules() -> None:
    """Let Ray's unpickling find a moved module under its old name (a sweep saved before)."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))


def can_resume(config: SweepConfig, sweep_dir: Path) -> bool:
    """Whether the sweep's Tune experiment has saved state to resume from."""
    path, filesystem = storage_for(experiment_path(config, sweep_dir))
    return bool(tune.Tuner.can_restore(path, storage_filesystem=filesystem))


def every_trial_ended(grid: tune.ResultGrid) -> bool:
    """Whether every trial Ray knows of ended (False after Ctrl-C stopped fit() early)."""
    return bool(grid.num_terminated + grid.num_errors == len(grid))


def checkpoint_root(config: SweepConfig, sweep_dir: Path) -> str:
    """Ray's storage for the sweep: tracking.checkpoint_storage/<sweep> (a shared path or a URI),
    else <sweep>/ray."""
    shared = config.tracking.checkpoint_storage
    return f"{shared.rstrip('/')}/{sweep_dir.name}" if shared else str(sweep_dir / "ray")


def experiment_path(config: SweepConfig, sweep_dir: Path) -> str:
    """The Tune experiment's directory (or URI): what a trial's checkpoints and resume use."""
    return f"{checkpoint_root(config, sweep_dir)}/{EXPERIMENT}"


def checkpoint_config(config: SweepConfig, *, metric: str, mode: str) -> tune.CheckpointConfig:
    """Keep k checkpoints per trial: the most recent, or the best by the objective. Ray always
    keeps the latest as well, which a restart resumes from."""
    recovery = config.recovery
    if recovery.keep_best_by == "objective":
        return tune.CheckpointConfig(
            num_to_keep=recovery.keep_checkpoints,
            checkpoint_score_attribute=metric,
            checkpoint_score_order=mode,
        )
    return tune.CheckpointConfig(num_to_keep=recovery.keep_checkpoints)


def build_scheduler(
    config: SweepConfig, *, max_rungs: int, goals: Sequence[Goal] = ()
) -> ASHAScheduler | MultiObjectiveASHA | FIFOScheduler:
    """ASHA on the trials' rungs (MO-ASHA with several goals), or no early stopping."""
    scheduler = config.scheduler
    if not isinstance(scheduler, AshaConfig):
        return FIFOScheduler()
    if len(goals) > 1:
        return MultiObjectiveASHA(
            goals=goals,
            max_t=max(max_rungs, 1),
            grace_period=min(scheduler.grace_period, max(max_rungs, 1)),
            reduction_factor=scheduler.reduction_factor,
        )
    return ASHAScheduler(
        time_attr=RUNG,
        max_t=max(max_rungs, 1),
        grace_period=min(scheduler.grace_period, max(max_rungs, 1)),
        reduction_factor=scheduler.reduction_factor,
    )


def _save_state_often() -> None:
    """Ray saves the experiment state at most every ~10 s by default; a driver killed in between
    would resume from state older than the sweep's own (trials re-suggested, Optuna trials asked
    twice). Saving it at every step of the loop costs little at sweep scale."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")


def _trainable(
    config: SweepConfig, *, spec: TrialSpec, sweep_dir: Path
) -> Callable[[Mapping[str, float]], None]:
    """The trial function with its spec, sweep and experiment bound, and the resources a trial
    holds."""
    trainable: Callable[[Mapping[str, float]], None] = tune.with_resources(
        tune.with_parameters(
            lora_trainable,
            spec=spec,
            sweep_dir=str(sweep_dir),
            experiment=experiment_path(config, sweep_dir),
        ),
        {"cpu": config.resources.cpu, "gpu": config.resources.gpu},
    )
    return trainable


class RecorderCallback(tune.Callback):
    """Forwards Ray's trial events to the recorder (the single MLflow writer).

    Ray pickles callbacks into the experiment state; the recorder (MLflow client, console) stays
    out of it. A restored callback (``sweep resume``) uses the recorder of the resuming driver.
    """

    @property
    def recorder(self) -> SweepRecorder:
        return active().recorder

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: Mapping[str, object]) -> None:
        pass

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: object
    ) -> None:
        self.recorder.trial_started(trial.trial_id, dict(trial.config))

    def on_trial_result(
        self,
        iteration: int,
        trials: list[Trial],
        trial: Trial,
        result: dict[str, object],
        **info: object,
    ) -> None:
        self.recorder.trial_result(trial.trial_id, result)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: object
    ) -> None:
        self.recorder.trial_ended(
            trial.trial_id, result=trial.last_result, checkpoint=_checkpoint_path(trial)
        )
        if self.recorder.removes_checkpoints_of(trial.trial_id):
            freed = remove_stored_checkpoints(trial.checkpoint)
            self.recorder.checkpoints_removed(trial.trial_id, freed=freed)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: object
    ) -> None:
        self.recorder.trial_ended(
            trial.trial_id,
            result=trial.last_result,
            checkpoint=_checkpoint_path(trial),
            error=_error_line(trial),
        )


def _checkpoint_path(trial: Trial) -> Path | None:
    """The trial's latest checkpoint as a local directory (copied from remote storage into
    <sweep>/work/final/<trial>, which the sweep's end clears)."""
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    if is_local(checkpoint.filesystem):
        return Path(checkpoint.path)
    target = active().recorder.state.path / WORK_DIR / "final" / trial.trial_id
    shutil.rmtree(target, ignore_errors=True)
    return Path(checkpoint.to_directory(str(target)))


def _error_line(trial: Trial) -> str:
    """The last line of the trial's traceback: the reason a failed run records."""
    path = trial.error_file
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        if lines:
            return lines[-1][:500]
    return "trial failed (no error file)"
