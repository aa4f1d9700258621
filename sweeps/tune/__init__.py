"""Ray Tune runs the sweep's trials; this package is the only one that imports ray.

- ``searcher``: Optuna's search as Ray drives it: trials stopped early told PRUNED, each rung and
  each end told once, and the search's saved state brought in step with Ray's after a crash.
- ``trainable``: one trial in its Ray worker: restarts from the newest intact checkpoint, and
  faults that a restart would only repeat.
- ``tuner``: starts and stops Ray, runs or resumes the Tune experiment, and forwards its trial
  events to the sweep's recorder.
- ``context``: what the driver holds for Ray's pickled callback and searcher, for one fit.
- ``compat``: every private name of Ray's and Optuna's the sweep relies on.

The tuner's functions are loaded on first use: importing ``sweeps.tune.compat`` or ``.context``
does not import ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweeps.tune.tuner import (
        can_resume,
        checkpoint_root,
        every_trial_ended,
        experiment_path,
        rerun_tuner,
        resume_tuner,
        run_tuner,
        start_ray,
        stop_ray,
    )

__all__ = [
    "can_resume",
    "checkpoint_root",
    "every_trial_ended",
    "experiment_path",
    "rerun_tuner",
    "resume_tuner",
    "run_tuner",
    "start_ray",
    "stop_ray",
]


def __getattr__(name: str) -> object:
    """The tuner's functions, imported (with ray) when first asked for."""
    if name in __all__:
        from sweeps.tune import tuner

        return getattr(tuner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
