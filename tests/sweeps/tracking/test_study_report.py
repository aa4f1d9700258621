"""Optuna's pictures of a sweep's study, drawn from a real Optuna study in sqlite."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeps.tracking.state import RAY_TRIAL_ID
from sweeps.tracking.study_report import (
    IMPORTANCE_FLOOR,
    IMPORTANCES,
    draw_picture,
    write_study_pictures,
)
from tests.sweeps.conftest import assert_picture

SPACE = {
    "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
    "lora_r": optuna.distributions.CategoricalDistribution([4, 8, 16]),
}
PICTURES = ("optimization_history.png", "parallel_coordinate.png", "param_importances.png",
            "intermediate_values.png")  # fmt: skip


def study_with(
    storage: str, *, completed: int, pruned: int, rungs: int = 3, carried: int = 0
) -> None:
    """A study as a sweep leaves it: trials with a value per rung, the pruned ones ending early,
    each tagged with its Ray trial id but the first ``carried`` (a warm start's)."""
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for number in range(completed + pruned):
        trial = study.ask(SPACE)
        if number >= carried:
            trial.set_user_attr(RAY_TRIAL_ID, f"ray{number}")
        stop = rungs if number < completed else 1
        for step in range(1, stop + 1):
            trial.report(0.1 * number + 0.05 * step, step)
        if number < completed:
            study.tell(trial, 0.1 * number + 0.05 * stop)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def test_a_sweeps_study_gives_all_four_pictures(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study_with(storage, completed=IMPORTANCE_FLOOR, pruned=2)
    pictures = write_study_pictures(storage, study_name="s", goals=["heldout/field_f1"],
                                    out_dir=tmp_path / "plots")  # fmt: skip
    assert sorted(pictures.written) == sorted(PICTURES) and pictures.skipped == {}
    for name in PICTURES:
        assert_picture(tmp_path / "plots" / name)
    study = optuna.load_study(study_name="s", storage=storage)
    title = draw_picture(study, IMPORTANCES, goals=["heldout/field_f1"]).axes[0].get_title()
    assert title == f"Hyperparameter importances (fANOVA), on {IMPORTANCE_FLOOR} completed trials"


def test_importances_from_too_few_trials_are_not_drawn(tmp_path: Path) -> None:
    """Below the floor, importances name the wrong knob too often (docs/perf.md (k)): the
    picture is skipped, saying how many trials there are and how many it needs."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study_with(storage, completed=IMPORTANCE_FLOOR - 1, pruned=2)
    pictures = write_study_pictures(storage, study_name="s", goals=["heldout/field_f1"],
                                    out_dir=tmp_path / "plots")  # fmt: skip
    assert IMPORTANCES not in pictures.written and len(pictures.written) == 3
    why = pictures.skipped["hyperparameter importances (fANOVA)"]
    assert why.startswith(f"{IMPORTANCE_FLOOR - 1} completed trials; importances need "
                          f"{IMPORTANCE_FLOOR}")  # fmt: skip


def test_the_pictures_name_trials_as_the_sweep_does(tmp_path: Path) -> None:
    """``Trial3`` becomes ``#3 <Ray id>``, as sweep status names it; a trial no Ray trial ran
    (a warm start's) keeps its number."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study_with(storage, completed=3, pruned=1, carried=1)
    study = optuna.load_study(study_name="s", storage=storage)
    figure = draw_picture(study, "intermediate_values.png", goals=["heldout/field_f1"])
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["#0", "#1 ray1", "#2 ray2", "#3 ray3"]
    history = draw_picture(study, "optimization_history.png", goals=["heldout/field_f1"])
    assert history.axes[0].get_xlabel().startswith("Trial # (as sweep status")


@pytest.mark.parametrize(("completed", "pruned"), [(0, 0), (0, 2)])
def test_a_study_with_no_completed_trial_skips_its_pictures_with_the_reason(
    tmp_path: Path, completed: int, pruned: int
) -> None:
    """Optuna draws empty axes for such a study, with only a warning: a blank picture would be
    logged as if it showed the sweep."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study_with(storage, completed=completed, pruned=pruned)
    pictures = write_study_pictures(storage, study_name="s", goals=["heldout/loss"],
                                    out_dir=tmp_path / "plots")  # fmt: skip
    assert pictures.written == {} and len(pictures.skipped) == len(PICTURES)
    assert set(pictures.skipped.values()) == {"no completed trial"}
    assert list((tmp_path / "plots").iterdir()) == []


def test_a_multi_objective_study_gives_its_pareto_front(tmp_path: Path) -> None:
    """Pictures of the first objective, and Optuna's Pareto front (no rung picture: such a
    study keeps each rung's values in the trial's rung_values)."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage,
                                directions=["maximize", "minimize"])  # fmt: skip
    for number in range(6):
        trial = study.ask(SPACE)
        if number == 5:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [0.1 * number, 10.0 * number + trial.params["lora_r"]])
    pictures = write_study_pictures(storage, study_name="s", out_dir=tmp_path / "plots",
                                    goals=["heldout/field_f1", "cost/device_seconds"])  # fmt: skip
    expected = {*PICTURES[:2], "pareto_front.png"}  # importances: 5 trials, under the floor
    assert set(pictures.written) == expected and list(pictures.skipped) == [
        "hyperparameter importances (fANOVA)"]  # fmt: skip
    for name in expected:
        assert_picture(tmp_path / "plots" / name)
