"""A sweep logging to a real `mlflow server` on 127.0.0.1 (proxied artefacts), not only to sqlite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import running_mlflow_server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("mlflow-server")
    with running_mlflow_server(f"sqlite:///{tmp / 'server.db'}", artifacts=tmp / "artifacts",
                               log=tmp / "server.log") as url:  # fmt: skip
        yield url


def test_sweep_logs_to_a_tracking_server(
    mlflow_server: str, tiny_model: Path, tmp_path: Path
) -> None:
    data = slice_embedded_data(tmp_path, train=24, heldout=6)
    config = tiny_sweep_config(
        tiny_model,
        data,
        tmp_path,
        search={"num_samples": 2, "max_concurrent": 2},
        scheduler={"type": "none"},
        search_space={"num_epochs": 1, "learning_rate": 5e-3, "lora_r": [2, 4]},
        objective={"metric": "heldout/loss"},
    )
    config["tracking"]["mlflow_uri"] = mlflow_server
    state = launch_sweep(config, name="served")
    client = MlflowClient(tracking_uri=mlflow_server)
    children = client.search_runs(
        [state.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'"
    )
    assert len(children) == 2 and all(r.data.tags["status"] == "completed" for r in children)
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "heldout/loss")]
        assert steps == sorted(set(steps)) and len(steps) == 2
        local = Path(client.download_artifacts(run.info.run_id, "adapter"))
        assert (
            local / "adapter_model.safetensors"
        ).stat().st_size > 0  # through the server's proxy
    assert client.get_run(state.parent_run_id).data.tags["version.mlflow"]
