"""Sweep state: names cannot escape their directory; state.json is whole; best is by the objective."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.tracking.state import SweepState, TrialRecord, load_state, sweep_directory


@pytest.mark.parametrize(
    "name", ["../up", "/etc/passwd", "a/b", "a\x00b", "..", ".hidden", "", "x" * 101]
)
def test_names_cannot_escape_the_state_dir(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="sweep name"):
        sweep_directory(tmp_path, name)


def test_state_round_trips_and_picks_the_best(tmp_path: Path) -> None:
    directory = sweep_directory(tmp_path, "s-1")
    state = SweepState(
        name="s-1",
        directory=str(directory),
        config_path="",
        objective_metric="heldout/loss",
        objective_mode="min",
        task_metric="field_f1",
        mlflow_uri="sqlite:///x.db",
    )
    state.trials = {
        "a": TrialRecord("a", "r1", {}, status="completed", metrics={"heldout/loss": 0.5}),
        "b": TrialRecord("b", "r2", {}, status="completed", metrics={"heldout/loss": 0.3}),
        "c": TrialRecord("c", "r3", {}, status="pruned", metrics={"heldout/loss": 0.1}),
    }
    state.save()
    loaded = load_state("s-1", state_dir=tmp_path)
    assert loaded == state
    assert loaded.best_trial().trial_id == "b"  # type: ignore[union-attr]  # pruned trials never win
    assert not list(directory.glob(".state.json.*"))  # no temp files left behind
    with pytest.raises(FileNotFoundError, match="no sweep"):
        load_state("missing", state_dir=tmp_path)
