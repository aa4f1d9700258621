"""Ray Tune runs the sweep's trials; this package is the only one that imports ray.

- ``searcher``: Optuna's search as Ray drives it: trials stopped early told PRUNED, each rung and
  each end told once, and the search's saved state brought in step with Ray's after a crash.
- ``trainable``: one trial in its Ray worker: restarts from the newest intact checkpoint, and
  faults that a restart would only repeat.
- ``tuner``: starts and stops Ray, runs or resumes the Tune experiment, and forwards its trial
  events to the sweep's recorder.
"""

from __future__ import annotations

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
