"""Every private name of Ray's and Optuna's that the sweep relies on, in one place.

Ray's OptunaSearch and its ConcurrencyLimiter keep no public way to restore the search in step
with the trials Ray restored after a driver crash, nor to reuse a study trial a crash orphaned;
Optuna keeps a trial's storage id and a distribution's bounds check private. Private names can
change in any release: tests/sweeps/tune/test_compat.py checks each one below against the installed
versions, so an upgrade that moves one fails there, by name, before a sweep meets it (and
``make drift`` runs it on the newest releases).

Attributes ``PruneAwareOptunaSearch`` inherits from Ray's OptunaSearch and uses as its own:
``_ot_study`` (the study), ``_ot_trials`` (Ray trial id -> study trial) and
``_completed_trials`` (the Ray trials already told); ``INHERITED`` lists them for the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    import pyarrow.fs
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

INHERITED = ("_ot_study", "_ot_trials", "_completed_trials")  # of Ray's OptunaSearch


def newest_experiment_state(root: str, filesystem: pyarrow.fs.FileSystem) -> str | None:
    """The newest experiment-state file under ``root``, chosen as Ray's own restore chooses it."""
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    newest: str | None = _find_newest_experiment_checkpoint(root, fs=filesystem)
    return newest


def storage_id(trial: optuna.trial.Trial | optuna.trial.FrozenTrial) -> int:
    """A study trial's id in its storage (not its number): what the storage's calls take."""
    trial_id: int = trial._trial_id
    return trial_id


def in_distribution(distribution: optuna.distributions.BaseDistribution, value: object) -> bool:
    """Whether ``value`` (as the user wrote it) lies inside ``distribution``."""
    inside: bool = distribution._contains(distribution.to_internal_repr(value))
    return inside


def set_live_trials(limiter: ConcurrencyLimiter, live: set[str]) -> None:
    """The trials a ConcurrencyLimiter counts as running (after Ray restored them)."""
    limiter.live_trials = live
    limiter.num_unfinished_live_trials = len(live)


def set_suggested_count(generator: SearchGenerator, count: int) -> None:
    """How many trials a SearchGenerator has had suggested (its restore reads a stale one)."""
    generator._counter = count
