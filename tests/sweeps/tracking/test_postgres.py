"""Team mode on real PostgreSQL (Debian's server, started on 127.0.0.1 by the fixture): the Optuna
study lives in one database, and an ``mlflow server`` with its backend store in another (proxied
artefacts) tracks the sweep. Both must hold every trial exactly once."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from tests.conftest import nothing_reached_mlflow, slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import create_database, refused_launch, running_mlflow_server

NUM_TRIALS = 4


@pytest.mark.timeout(900)  # a scheduling regression would hang Ray: fail instead
def test_optuna_and_mlflow_on_postgresql_hold_every_trial_once(
    postgres: str, tiny_model: Path, tmp_path: Path
) -> None:
    study_db = create_database(postgres, "optuna_team")
    with running_mlflow_server(create_database(postgres, "mlflow_team"),
                               artifacts=tmp_path / "artifacts",
                               log=tmp_path / "server.log") as url:  # fmt: skip
        data = slice_embedded_data(tmp_path, train=24, heldout=4)
        config = tiny_sweep_config(
            tiny_model, data, tmp_path,
            search={"algorithm": "tpe", "num_samples": NUM_TRIALS, "max_concurrent": 2,
                    "storage": study_db},
            search_space={"num_epochs": 2, "lora_r": [2, 4], "sequence_len": [128]},
            evaluation={"max_new_tokens": 4, "batch_size": 4, "logged_generations": 1},
        )  # fmt: skip
        config["tracking"]["mlflow_uri"] = url
        state = launch_sweep(config, name="team")
        client = MlflowClient(url)
        children = client.search_runs(
            [state.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'",
        )
        parent = client.get_run(state.parent_run_id)
    assert state.status == "completed" and len(state.trials) == NUM_TRIALS
    assert sorted(c.data.tags["lora_sweep.trial_id"] for c in children) == sorted(state.trials)
    assert not (state.path / "optuna.db").exists()  # the study is in PostgreSQL, not sqlite
    assert parent.data.params["search.storage"] == study_db  # no password in it to hide

    study = optuna.load_study(study_name=state.name, storage=study_db)
    assert len(study.trials) == NUM_TRIALS
    finished = {"completed": optuna.trial.TrialState.COMPLETE,
                "pruned": optuna.trial.TrialState.PRUNED}  # fmt: skip
    assert sorted(t.state.name for t in study.trials) == sorted(
        finished[t.status].name for t in state.trials.values())  # fmt: skip
    assert_dashboard_serves(state.name, state_dir=state.path.parent, trials=NUM_TRIALS)


def assert_dashboard_serves(study: str, *, state_dir: Path, trials: int) -> None:
    """``sweep dashboard`` on the study in PostgreSQL: optuna-dashboard's API lists it with
    every trial, on 127.0.0.1; SIGHUP (a closed terminal) stops it whole."""
    import json
    import signal
    import urllib.request

    from tests.sweeps.conftest import free_port
    from tests.sweeps.tracking.test_ui import start_server, stopped_by_signal

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, printed = start_server(["dashboard", study, "--state-dir", str(state_dir), "--port",
                                  str(port)], health=f"{base}/api/studies")  # fmt: skip
    try:
        assert printed[0].startswith("optuna-dashboard for postgresql://postgres@127.0.0.1:")
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as response:
            studies = json.loads(response.read())["study_summaries"]
        assert [s["study_name"] for s in studies] == [study]
        with urllib.request.urlopen(
            f"{base}/api/studies/{studies[0]['study_id']}", timeout=30
        ) as r:
            assert len(json.loads(r.read())["trials"]) == trials
        stopped_by_signal(proc, port, signal.SIGHUP)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_unreachable_study_database_is_refused_before_ray(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = slice_embedded_data(tmp_path, train=8, heldout=2)
    config = tiny_sweep_config(tiny_model, data, tmp_path, search={
        "storage": "postgresql://bob:hunter2@127.0.0.1:9/optuna"})  # fmt: skip
    path = tmp_path / "sweep.yaml"
    error = refused_launch(config, path, capsys)
    assert error.startswith(f"error: {path}: search.storage: postgresql://bob:***@127.0.0.1:9/"
                            "optuna: "), error  # fmt: skip
    assert "hunter2" not in error and nothing_reached_mlflow(tmp_path)
