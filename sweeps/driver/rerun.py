"""``sweep rerun SWEEP --failed``: a finished sweep's failed trials, run again in the same sweep
and the same Optuna study.

W&B cannot re-run a sweep's failed runs (wandb#1879); a Ray Tune user restores the experiment
with ``restart_errored=True`` and then has an Optuna study that still says FAIL and an MLflow run
holding the failed attempt's metrics. Here each failed trial:

- keeps its Ray trial id, and Ray runs it again from scratch (``sweeps/tune/tuner.py``);
- gets a new study trial with the same hyperparameters (enqueued, so the sampler does not choose
  them), tagged with the Ray trial id and ``rerun_of`` (the failed one's number), which the
  search tells how the new attempt ended; the failed study trial stays FAIL, as it happened;
- gets a new MLflow child run, its metrics logged once; the failed attempt's run stays, tagged
  ``rerun=replaced``, and listed in state.json under ``reruns``;
- loses its fault marker (faults/<trial>.txt), so a fault that was not retried is tried again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sweeps.config import ConfigError
from sweeps.console import Say
from sweeps.tracking.state import FAULTS_DIR, RAY_TRIAL_ID, SweepState, TrialRecord

if TYPE_CHECKING:
    import optuna

    from sweeps.tracking.mlflow_facade import SweepTracker

RERUN_OF = "rerun_of"  # a re-run's study trial: the number of the failed one it repeats


def failed_trials(state: SweepState) -> list[TrialRecord]:
    """The sweep's failed trials, in trial order."""
    return sorted(
        (t for t in state.trials.values() if t.status == "failed"), key=lambda t: t.trial_id
    )


def check_rerunnable(state: SweepState, *, storage: str, trials: Sequence[TrialRecord]) -> None:
    """Each failed trial has its study trial (tagged with its Ray trial id), before anything is
    started or written; one line naming the first that has none."""
    import optuna

    study = optuna.load_study(study_name=state.name, storage=storage)
    tagged = {t.user_attrs.get(RAY_TRIAL_ID) for t in study.get_trials(deepcopy=False)}
    for record in trials:
        if record.trial_id not in tagged:
            raise ConfigError(
                f"sweep {state.name}: trial {record.trial_id} has no study trial tagged with its "
                "Ray trial id (the sweep predates re-runs); launch a new sweep, or warm-start one "
                f"from it (search.warm_start: {state.name})"
            )


def prepare_rerun(
    state: SweepState,
    tracker: SweepTracker,
    *,
    storage: str,
    trials: Sequence[TrialRecord],
    say: Say,
) -> list[str]:
    """Make each failed trial ready to run again (see the module's docstring); returns their ids."""
    import optuna

    study = optuna.load_study(study_name=state.name, storage=storage)
    for record in trials:
        requeue(study, record.trial_id)
        tracker.set_tags(record.run_id, {"rerun": "replaced"})
        state.reruns.setdefault(record.trial_id, []).append(record.run_id)
        del state.trials[record.trial_id]
        (state.path / FAULTS_DIR / f"{record.trial_id}.txt").unlink(missing_ok=True)
        say(f"re-running {record.trial_id} ({(record.error or 'failed').splitlines()[0][:120]})")
    state.status = "running"
    state.save()
    return [record.trial_id for record in trials]


def study_numbers(storage: str, study_name: str) -> Callable[[str], int | None]:
    """A Ray trial's study trial number (the newest tagged with it: a re-run's), once the search
    suggested it; None before, or for a study that does not tag its trials."""
    import optuna

    def number(trial_id: str) -> int | None:
        study = optuna.load_study(study_name=study_name, storage=storage)
        return max(
            (
                t.number
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get(RAY_TRIAL_ID) == trial_id
            ),
            default=None,
        )

    return number


def requeue(study: optuna.Study, trial_id: str) -> int:
    """A new RUNNING study trial with the failed one's hyperparameters, tagged with its Ray
    trial; returns its number."""
    tagged = [
        t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(RAY_TRIAL_ID) == trial_id
    ]
    if not tagged:
        raise LookupError(f"the study holds no trial of Ray trial {trial_id}")
    failed = tagged[-1]
    study.enqueue_trial(
        dict(failed.params), user_attrs={RAY_TRIAL_ID: trial_id, RERUN_OF: failed.number}
    )
    return study.ask(fixed_distributions=dict(failed.distributions)).number
