"""search.warm_start: a new sweep's study starts with a prior sweep's finished trials that fit
its space, each added exactly once (a resumed driver adds none again); what does not fit is
named; a missing prior sweep, another objective or another base model is refused before any
compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweeps import launch_sweep
from sweeps.config import ConfigError, config_from_dict
from sweeps.driver.preflight import preflight
from sweeps.driver.warm_start import ORIGIN, carried_trials, resolve_prior, seed_study
from sweeps.search.pareto import Goal
from sweeps.tracking.state import study_storage
from tests.conftest import slice_embedded_data, tiny_sweep_config

NARROW = {"type": "loguniform", "low": 1e-3, "high": 4e-3}


def study_of(raw: dict[str, Any], name: str, state_dir: Path) -> optuna.Study:
    storage = study_storage(config_from_dict(raw), state_dir / name)
    return optuna.load_study(study_name=name, storage=storage)


def test_a_warm_start_carries_the_fitting_trials_once_and_names_the_rest(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = slice_embedded_data(tmp_path, train=16, heldout=4)
    prior = tiny_sweep_config(tiny_model, data, tmp_path, search={"algorithm": "random",
                              "num_samples": 4, "seed": 5})  # fmt: skip
    launch_sweep(prior, name="first")
    state_dir = tmp_path / "sweeps"
    finished = [t for t in study_of(prior, "first", state_dir).trials
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]  # fmt: skip
    fits = [t for t in finished if t.params["learning_rate"] <= NARROW["high"]]
    assert 0 < len(fits) < len(finished), "the seed should put trials on both sides of 4e-3"

    second = tiny_sweep_config(tiny_model, data, tmp_path, search={"num_samples": 1,
                               "warm_start": "first"},
                               search_space={"learning_rate": NARROW})  # fmt: skip
    capsys.readouterr()
    state = launch_sweep(second, name="second")
    out = " ".join(capsys.readouterr().out.split())
    assert (f"Warm start from first: {len(fits)} of its {len(finished)} finished trials carried "
            f"over; skipped: learning_rate outside the new space ({len(finished) - len(fits)})"
            ) in out  # fmt: skip
    study = study_of(second, "second", state_dir)
    carried = [t for t in study.trials if ORIGIN in t.user_attrs]
    assert sorted(t.user_attrs[ORIGIN] for t in carried) == sorted(
        f"first#{t.number}" for t in fits
    )
    by_origin = {f"first#{t.number}": t for t in fits}
    for trial in carried:  # the same knobs, value, rung values and state
        source = by_origin[trial.user_attrs[ORIGIN]]
        assert (trial.params, trial.state, trial.intermediate_values) == (
            source.params,
            source.state,
            source.intermediate_values,
        )
        assert trial.value == (source.value if source.state == TrialState.COMPLETE else None)
    assert len(study.trials) == len(fits) + 1 and len(state.trials) == 1

    # a resumed driver seeds again: nothing is added twice
    loaded = resolve_prior(config_from_dict(second), state_dir=state_dir)
    added = seed_study(loaded, study_name="second", storage=study_storage(loaded, state.path),
                       goals=state.goals, say=print)  # fmt: skip
    assert added == 0 and len(study_of(second, "second", state_dir).trials) == len(fits) + 1

    # a prior sweep with another objective, or another base model, is refused
    with pytest.raises(ConfigError, match=r"^search\.warm_start: first optimised heldout/"):
        carried_trials(loaded, prior_dir=state_dir / "first", goals=[Goal("heldout/loss", "min")])
    other = loaded.model_copy(update={"base_model": "smollm2-135m-instruct"})
    with pytest.raises(ConfigError, match=r"ran with base_model .* this sweep smollm2"):
        carried_trials(other, prior_dir=state_dir / "first", goals=state.goals)


def test_a_missing_prior_sweep_is_refused_before_compute(tiny_model: Path, tmp_path: Path) -> None:
    data = slice_embedded_data(tmp_path, train=16, heldout=4)
    raw = tiny_sweep_config(tiny_model, data, tmp_path, search={"warm_start": "nowhere"})
    config = resolve_prior(config_from_dict(raw), state_dir=tmp_path / "sweeps")
    with pytest.raises(ConfigError, match=r"^<config>: search.warm_start: no sweep at .*nowhere; "
                       r"name a sweep in tracking.state_dir"):  # fmt: skip
        preflight(config, config_path=None, config_dir=tmp_path)
    prior = tmp_path / "sweeps" / "nowhere"
    with pytest.raises(ConfigError, match=r"search\.warm_start: no sweep at"):
        carried_trials(config, prior_dir=prior, goals=[Goal("heldout/loss", "min")])
