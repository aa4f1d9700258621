"""Every ``search.algorithm``: its Optuna sampler, the space it searches, what validate says, and
a tiny sweep on the tiny model through Ray Tune, with ASHA stopping trials early."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evals.metric_keys import FINAL_RUNG, RUNG
from sweeps import launch_sweep
from sweeps.config import ConfigError, SweepConfig, config_from_dict
from sweeps.search.pareto import Goal
from sweeps.search.samplers import (
    ALGORITHMS,
    AskTellGridSampler,
    build_sampler,
    describe_search,
    sampler_note,
)
from sweeps.search.space import define_by_run
from sweeps.tracking.state import study_storage
from sweeps.tune.searcher import PruneAwareOptunaSearch
from tests.conftest import slice_embedded_data, tiny_sweep_config

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": AskTellGridSampler,  # GridSampler, minus its Study.stop() (it raised in ask-tell)
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
RANGES = {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
          "lora_dropout": {"type": "uniform", "low": 0.0, "high": 0.2},
          "num_epochs": {"type": "int", "low": 1, "high": 3}, "lora_r": [4, 8]}  # fmt: skip
GRID = {"learning_rate": [1e-4, 1e-3], "lora_r": [4, 8], "num_epochs": [1, 2]}


def config(
    algorithm: str, *, space: dict[str, object] | None = None, **search: object
) -> SweepConfig:
    grid = algorithm == "grid"
    raw = {"data": {"train": "train.jsonl"}, "search_space": space or (GRID if grid else RANGES),
           "search": {"algorithm": algorithm, "num_samples": 12, "seed": 7, **search}}  # fmt: skip
    return config_from_dict(raw, source="s.yaml")


def test_every_algorithm_the_schema_accepts_has_its_sampler() -> None:
    accepted = SweepConfig.model_fields["search"].annotation
    assert accepted is not None
    algorithms = set(accepted.model_fields["algorithm"].annotation.__args__)
    assert algorithms == set(SAMPLERS) == set(ALGORITHMS)
    for algorithm, sampler in SAMPLERS.items():
        assert type(build_sampler(config(algorithm))) is sampler


@pytest.mark.parametrize("algorithm", sorted(SAMPLERS))
def test_each_sampler_searches_the_space_and_learns_from_pruned_trials(
    algorithm: str, tmp_path: Path
) -> None:
    """Through the sweep's searcher, as Ray calls it: 12 trials, every third stopped early
    (PRUNED with its rung values); every suggestion lies in the space."""
    swept = config(algorithm)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = PruneAwareOptunaSearch(space=define_by_run(swept), metric="score", mode="max",
                                    sampler=build_sampler(swept),
                                    storage=optuna.storages.RDBStorage(url), study_name="s")  # fmt: skip
    for i in range(12):
        params = search.suggest(f"t{i}")
        assert params is not None
        lr = float(params["learning_rate"])
        assert 1e-4 <= lr <= 1e-2 and params["lora_r"] in (4, 8)
        score = -abs(lr - 3e-3) * 100 + int(params["lora_r"]) / 100
        pruned = i % 3 == 2
        search.on_trial_result(f"t{i}", {"score": score / 2, RUNG: 1.0, FINAL_RUNG: 0.0})
        search.on_trial_complete(
            f"t{i}", {"score": score, RUNG: 2.0, FINAL_RUNG: float(not pruned)}
        )
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials].count(TrialState.PRUNED) == 4
    assert all(len(t.intermediate_values) == 2 for t in trials)
    if algorithm == "grid":  # 8 points: each once, then round again
        assert len({tuple(sorted(t.params.items())) for t in trials[:8]}) == 8


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"algorithm": "random", "multivariate": True}, "tpe's options, not random's"),
        ({"algorithm": "tpe", "group": True}, "search.group needs search.multivariate: true"),
        ({"algorithm": "annealing"}, "search.algorithm"),
    ],
)  # fmt: skip
def test_options_that_do_not_fit_the_algorithm_are_refused(
    raw: dict[str, object], error: str
) -> None:
    with pytest.raises(ConfigError, match=r"s\.yaml") as refused:
        config_from_dict({"data": {"train": "t.jsonl"}, "search": raw}, source="s.yaml")
    assert error in str(refused.value) and len(str(refused.value).splitlines()) == 1


@pytest.mark.parametrize("algorithm", ["cmaes", "qmc"])
def test_samplers_of_ranges_refuse_a_space_of_choices_and_name_the_choices_they_skip(
    algorithm: str,
) -> None:
    with pytest.raises(ConfigError, match=f"{algorithm} searches ranges, and every searched knob"):
        config(algorithm, space={"learning_rate": [1e-4, 1e-3], "lora_r": [4, 8]})
    note = sampler_note(config(algorithm))
    assert note is not None and note.startswith(f"search.algorithm {algorithm}: lora_r is a choice")
    ranges_only = {"learning_rate": RANGES["learning_rate"], "lora_r": 8, "lora_alpha": 16}
    assert sampler_note(config(algorithm, space=ranges_only)) is None
    assert sampler_note(config("tpe")) is None


def test_validate_names_the_algorithm_the_objective_and_how_trials_stop() -> None:
    lines = describe_search(config("tpe", multivariate=True, group=True),
                            goals=[Goal("heldout/field_f1", "max")], max_rungs=4)  # fmt: skip
    assert lines[0] == ("search: tpe, TPE (Optuna's Bayesian default), multivariate with groups; "
                        "12 trials, seed 7")  # fmt: skip
    assert lines[1] == "objective: heldout/field_f1 (max)"
    assert lines[2].startswith("stopping: ASHA on the held-out rungs (of 4): every trial runs 1 ")
    both = [Goal("heldout/field_f1", "max"), Goal("cost/device_seconds", "min")]
    multi = describe_search(config("tpe"), goals=both, max_rungs=4)
    assert multi[0] == ("search: tpe, TPE (Optuna's Bayesian default), multi-objective; 12 trials, "
                        "seed 7")  # fmt: skip
    assert multi[1] == ("objectives: heldout/field_f1 (max), cost/device_seconds (min): their "
                        "Pareto front")  # fmt: skip
    assert "MO-ASHA: a trial is stopped only when a trial at its rung dominates it" in multi[2]
    cmaes = describe_search(config("cmaes"), goals=[Goal("heldout/loss", "min")], max_rungs=1)
    assert cmaes[2] == "stopping: none, every trial runs all its rungs"
    assert cmaes[3] == sampler_note(config("cmaes"))


@pytest.mark.parametrize("algorithm", sorted(SAMPLERS))
def test_a_tiny_sweep_runs_with_each_sampler(
    algorithm: str, tiny_model: Path, tmp_path: Path
) -> None:
    """Every sampler in a real sweep: Ray Tune, ASHA and the sampler together, every trial in the
    study once (``make drift`` runs these on the newest releases). NSGA-II, a multi-objective
    sampler, sweeps two objectives (held-out loss and device-seconds) under MO-ASHA."""
    data = slice_embedded_data(tmp_path, train=16, heldout=4)
    two = {"objective": ["heldout/loss", "cost/device_seconds"]} if algorithm == "nsga2" else {}
    lr = [1e-4, 1e-2] if algorithm == "grid" else RANGES["learning_rate"]  # grid: choices
    raw = tiny_sweep_config(tiny_model, data, tmp_path, **two, search={"algorithm": algorithm,
                            "num_samples": 2, "max_concurrent": 2, "seed": 3},
                            search_space={"learning_rate": lr,
                            "lora_r": [2, 4], "lora_alpha": 4, "num_epochs": 1,
                            "sequence_len": [128]})  # fmt: skip
    state = launch_sweep(raw, name=algorithm)
    assert state.status == "completed" and len(state.trials) == 2
    study = optuna.load_study(study_name=algorithm, storage=study_storage(
        config_from_dict(raw), state.path))  # fmt: skip
    assert len(study.trials) == 2 and len(study.directions) == (2 if two else 1)
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(1e-4 <= t.params["learning_rate"] <= 1e-2 for t in study.trials)


@pytest.mark.parametrize("algorithm", ["tpe"])
def test_a_tiny_multi_objective_sweep_runs_with_optunas_multi_objective_samplers(
    algorithm: str, tiny_model: Path, tmp_path: Path
) -> None:
    """tpe with two objectives is Optuna's multi-objective TPE (MOTPE) (nsga2's tiny sweep,
    above, is multi-objective too): a study of two directions, every finished trial told both
    values."""
    data = slice_embedded_data(tmp_path, train=16, heldout=4)
    raw = tiny_sweep_config(tiny_model, data, tmp_path, objective=["heldout/loss",
                            {"metric": "cost/device_seconds", "mode": "min"}],
                            search={"algorithm": algorithm, "num_samples": 2, "max_concurrent": 2,
                            "seed": 3}, search_space={"learning_rate": RANGES["learning_rate"],
                            "lora_r": [2, 4], "lora_alpha": 4, "num_epochs": 1,
                            "sequence_len": [128]})  # fmt: skip
    state = launch_sweep(raw, name=f"mo-{algorithm}")
    assert state.status == "completed" and state.multi_objective
    study = optuna.load_study(study_name=f"mo-{algorithm}", storage=study_storage(
        config_from_dict(raw), state.path))  # fmt: skip
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and all(len(t.values) == 2 for t in complete)
    assert state.best_trial() in state.front()
