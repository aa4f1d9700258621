"""Each private name of Ray's and Optuna's in sweeps/tune/compat.py still means what the sweep
takes it to mean in the installed versions: an upgrade that moves one fails here, by name."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pyarrow.fs
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps.tune import compat
from sweeps.tune.searcher import SweepSearchGenerator


def test_optunas_private_names(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.storage_id(trial) == compat.storage_id(frozen)
    assert study._storage.get_trial(compat.storage_id(trial)).number == trial.number
    floats = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert compat.in_distribution(floats, 1e-3) and not compat.in_distribution(floats, 0.1)
    choices = optuna.distributions.CategoricalDistribution([4, 8])
    assert compat.in_distribution(choices, 8)


def test_rays_private_names(tmp_path: Path) -> None:
    searcher = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
                            metric="loss", mode="min")  # fmt: skip
    assert all(hasattr(searcher, name) for name in compat.INHERITED), compat.INHERITED
    assert searcher.suggest("t1") is not None and "t1" in searcher._ot_trials
    limiter = ConcurrencyLimiter(searcher, max_concurrent=2)
    # set, not only read: each must already be Ray's own, or setting it would change nothing
    assert isinstance(limiter.live_trials, set) and limiter.num_unfinished_live_trials == 0
    compat.set_live_trials(limiter, {"a", "b"})
    assert limiter.live_trials == {"a", "b"} and limiter.num_unfinished_live_trials == 2
    generator = SweepSearchGenerator(limiter, experiment=str(tmp_path))
    assert generator._counter == 0
    compat.set_suggested_count(generator, 5)
    assert generator._counter == 5
    # Ray's experiment-state files: the newest by name, as its own restore picks them
    for stamp in ("2026-12-01_10-00-00", "2026-12-02_10-00-00"):
        (tmp_path / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": []}))
    newest = compat.newest_experiment_state(str(tmp_path), pyarrow.fs.LocalFileSystem())
    assert newest is not None and newest.endswith("experiment_state-2026-12-02_10-00-00.json")
