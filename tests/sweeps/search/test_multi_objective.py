"""Multi-objective sweeps: the objective list, MO-ASHA stopping dominated trials at a rung (told
to Optuna as PRUNED with their rung values), the Pareto front in the summary, and the trial
``sweep best`` and ``sweep promote`` take from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from evals.metric_keys import HELDOUT_LOSS, RUNG
from sweeps import launch_sweep
from sweeps.cli.main import main
from sweeps.config import ConfigError, SweepConfig, config_from_dict, load_config
from sweeps.release.promote import check_on_the_front
from sweeps.search.pareto import RUNG_VALUES, Goal, dominates, losses
from sweeps.tracking.state import RELAUNCH_CONFIG, SweepState, TrialRecord, study_storage
from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import ray_results

LRS = [3e-5, 1e-4, 3e-3, 1e-2]


def test_an_objective_list_is_the_first_metric_and_the_others() -> None:
    raw = {"data": {"train": "t.jsonl"},
           "objective": ["heldout/field_f1", {"metric": "cost/device_seconds"},
                         {"metric": "objective/benchmark_delta", "mode": "max"}]}  # fmt: skip
    objective = config_from_dict(raw, source="s.yaml").objective
    assert objective.metric == "heldout/field_f1" and objective.pick == "knee"
    assert [(t.metric, t.resolved_mode) for t in objective.also] == [
        ("cost/device_seconds", "min"), ("objective/benchmark_delta", "max")]  # fmt: skip


@pytest.mark.parametrize(
    ("objective", "search", "error"),
    [(["heldout/loss", "heldout/loss"], {}, "objective names heldout/loss twice"),
     (["heldout/loss", "cost/dollars"], {}, "unknown metric 'cost/dollars'"),
     (["heldout/loss", "cost/device_seconds"], {"algorithm": "cmaes"},
      "search.algorithm cmaes optimises one objective, and objective lists 2; use tpe")],
)  # fmt: skip
def test_a_bad_objective_list_is_refused_in_one_line(
    objective: list[Any], search: dict[str, str], error: str
) -> None:
    raw = {"data": {"train": "t.jsonl"}, "objective": objective, "search": search,
           "search_space": {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"^s\.yaml") as refused:
        config_from_dict(raw, source="s.yaml")
    assert error in str(refused.value) and len(str(refused.value).splitlines()) == 1


def test_the_front_and_the_knee_pick_the_best_trial(tmp_path: Path) -> None:
    state = SweepState(name="s", directory=str(tmp_path), config_path="", mlflow_uri="",
                       objective_metric="heldout/field_f1", objective_mode="max",
                       task_metric="field_f1", also=[["cost/device_seconds", "min"]])  # fmt: skip
    for trial_id, f1, seconds in [("a", 0.90, 900.0), ("b", 0.88, 100.0), ("c", 0.50, 50.0),
                                  ("d", 0.70, 400.0)]:  # fmt: skip
        metrics = {"heldout/field_f1": f1, "cost/device_seconds": seconds}
        state.trials[trial_id] = TrialRecord(trial_id, "", {}, "completed", metrics=metrics)
    assert [t.trial_id for t in state.front()] == ["a", "b", "c"]  # d: b dominates it
    best = state.best_trial()
    assert best is not None and best.trial_id == "b"  # the knee
    state.pick = "first"
    best = state.best_trial()
    assert best is not None and best.trial_id == "a"
    with pytest.raises(ConfigError, match=r"^s/d is not on the Pareto front of heldout/field_f1 "
                       r"and cost/device_seconds .*promote one of the front: a, b, c$"):  # fmt: skip
        check_on_the_front(state, "d")
    check_on_the_front(state, "c")  # on the front: promotable
    state.trials["b"].guard = ["hellaswag: -3.1 points"]  # the guard's constraint holds first
    assert [t.trial_id for t in state.front()] == ["a", "d", "c"]


@pytest.fixture(scope="module")
def mo_sweep(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> SweepState:
    """Four trials one at a time, held-out loss (min) and the task metric (max): four rungs
    each, MO-ASHA at rungs 1 and 2; a trial far from the good learning rates is dominated."""
    tmp_path = tmp_path_factory.mktemp("mo")
    data = slice_embedded_data(tmp_path, train=16, heldout=4)
    raw = tiny_sweep_config(
        tiny_model, data, tmp_path, objective=["heldout/loss", "heldout/task_metric"],
        search={"algorithm": "grid", "num_samples": 4, "max_concurrent": 1, "seed": 3},
        search_space={"learning_rate": LRS, "lora_r": 4, "lora_alpha": 8, "num_epochs": 2,
                      "sequence_len": [128]},
    )  # fmt: skip
    (tmp_path / "mo.yaml").write_text(json.dumps(raw))
    return launch_sweep(tmp_path / "mo.yaml", name="mo")


def test_a_dominated_trial_is_stopped_at_a_rung_and_told_pruned_with_its_rung_values(
    mo_sweep: SweepState,
) -> None:
    state = mo_sweep
    assert state.status == "completed" and state.multi_objective
    goals = state.goals
    assert [g.metric for g in goals] == [HELDOUT_LOSS, "heldout/field_f1"]
    pruned = [t for t in state.trials.values() if t.status == "pruned"]
    assert pruned, "no trial was stopped early"
    results = ray_results(state)
    for record in pruned:  # at the rung it stopped, an earlier trial there dominated it
        stop = record.rungs
        mine = losses(goals, record.metrics)
        rivals = [losses(goals, row) for trial_id, rows in results.items()
                  if trial_id != record.trial_id for row in rows if row.get(RUNG) == stop]  # fmt: skip
        assert any(dominates(r, mine) for r in rivals), record.trial_id  # type: ignore[arg-type]
    study = optuna.load_study(study_name="mo", storage=study_storage(_config(state), state.path))
    assert len(study.directions) == 2 and len(study.trials) == 4
    by_state = {s: [t for t in study.trials if t.state == s] for s in TrialState}
    assert len(by_state[TrialState.PRUNED]) == len(pruned)
    for trial in by_state[TrialState.PRUNED]:
        rungs = trial.user_attrs[RUNG_VALUES]
        assert trial.values is None and len(rungs) >= 1
        assert all(len(values) == 2 for values in rungs.values())
    for trial in by_state[TrialState.COMPLETE]:
        assert len(trial.values) == 2 and len(trial.user_attrs[RUNG_VALUES]) == 4


def _config(state: SweepState) -> SweepConfig:
    return load_config(state.path / RELAUNCH_CONFIG)


def test_best_names_the_front_and_the_rule_that_picked_from_it(
    mo_sweep: SweepState, capsys: pytest.CaptureFixture[str]
) -> None:
    state = mo_sweep
    state_dir = str(state.path.parent)
    assert main(["best", "mo", "--state-dir", state_dir]) == 0
    out = capsys.readouterr().out
    front = state.front()
    best = state.best_trial()
    assert best is not None and best in front
    assert f"Pareto front of heldout/loss (min) and heldout/field_f1 (max): {len(front)}" in out
    assert f"picked by the knee: {best.name}" in out and best.name.startswith("#")
    for record in front:
        assert record.name in out
    assert main(["best", "mo", "--state-dir", state_dir, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["pareto_front"] == [t.trial_id for t in front] and shown["pick"] == "knee"
    assert shown["objectives"] == [["heldout/loss", "min"], ["heldout/field_f1", "max"]]


def test_goal_modes_round_trip_through_state(mo_sweep: SweepState) -> None:
    from sweeps.tracking.state import load_state

    again = load_state("mo", state_dir=mo_sweep.path.parent)
    assert again.goals == [Goal(HELDOUT_LOSS, "min"), Goal("heldout/field_f1", "max")]
