"""A real sweep on the tiny model: Ray Tune + Optuna (sqlite) + ASHA + MLflow (sqlite), no mocks.

One sweep runs once for the module; each test reads a different part of what it left behind.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from sweeps import launch_sweep
from sweeps.cli.main import main
from sweeps.tracking.state import SweepState, load_state
from tests.conftest import slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import ray_results

NUM_TRIALS = 6


@pytest.fixture(scope="module")
def sweep(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("sweep")
    data = slice_embedded_data(tmp, train=48, heldout=12)
    config = tiny_sweep_config(
        tiny_model,
        data,
        tmp,
        search_space={
            "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2},
            "num_epochs": 2,
        },
        search={"num_samples": NUM_TRIALS, "max_concurrent": 2},
        objective={"metric": "heldout/loss"},
    )
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse cache fixture is later
        patch.setenv("LORA_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        state = launch_sweep(config, name="tiny-sweep")
    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    return {"state": state, "config": config, "client": client, "tmp": tmp}


def child_runs(sweep: dict[str, Any]) -> list[Any]:
    state: SweepState = sweep["state"]
    return sweep["client"].search_runs(
        [state.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{state.parent_run_id}'"
    )


def test_sweep_completes_with_pruned_and_completed_trials(sweep: dict[str, Any]) -> None:
    state: SweepState = sweep["state"]
    assert state.status == "completed"
    statuses = [t.status for t in state.trials.values()]
    assert len(statuses) == NUM_TRIALS
    assert set(statuses) <= {"completed", "pruned"}
    assert "completed" in statuses and "pruned" in statuses, statuses
    assert (
        load_state(state.path.as_posix(), state_dir=state.path.parent).trials.keys()
        == state.trials.keys()
    )


def test_asha_stopped_trials_are_pruned_in_optuna_with_intermediate_values(
    sweep: dict[str, Any],
) -> None:
    state: SweepState = sweep["state"]
    study = optuna.load_study(
        study_name=state.name, storage=f"sqlite:///{state.path / 'optuna.db'}"
    )
    assert len(study.trials) == NUM_TRIALS
    # optuna-dashboard and Optuna's pictures name the objective, not "Objective 0"
    assert study.metric_names == [state.objective_metric]
    by_lr = {round(t.params["learning_rate"], 12): t for t in study.trials}
    for record in state.trials.values():
        trial = by_lr[round(record.params["learning_rate"], 12)]
        history = [row for row in ray_results(state)[record.trial_id]]
        assert len(trial.intermediate_values) == len(history) == record.rungs
        if record.status == "pruned":
            assert trial.state == optuna.trial.TrialState.PRUNED
            # Optuna's convention: a pruned trial's value is its last intermediate value
            assert trial.value == trial.intermediate_values[max(trial.intermediate_values)]
            assert record.rungs < 4
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == pytest.approx(record.metrics["heldout/loss"])
            assert record.rungs == 4
        rung_values = [
            row["heldout/loss"] for row in sorted(history, key=lambda r: r["training_iteration"])
        ]
        assert [
            trial.intermediate_values[k] for k in sorted(trial.intermediate_values)
        ] == pytest.approx(rung_values)


def test_every_metric_point_reaches_mlflow_exactly_once(sweep: dict[str, Any]) -> None:
    state: SweepState = sweep["state"]
    client: MlflowClient = sweep["client"]
    ray_rows = ray_results(state)
    for record in state.trials.values():
        for key in ("heldout/loss", "train/loss", "heldout/field_f1", "tokens_trained"):
            history = client.get_metric_history(record.run_id, key)
            logged = sorted((m.step, m.value) for m in history)
            expected = sorted((int(r["step"]), float(r[key])) for r in ray_rows[record.trial_id])
            assert [step for step, _ in logged] == [step for step, _ in expected], (
                record.trial_id,
                key,
            )
            assert [v for _, v in logged] == pytest.approx([v for _, v in expected]), (
                record.trial_id,
                key,
            )
            assert len({step for step, _ in logged}) == len(logged)


def test_parent_run_holds_config_search_space_and_provenance(sweep: dict[str, Any]) -> None:
    state: SweepState = sweep["state"]
    client: MlflowClient = sweep["client"]
    parent = client.get_run(state.parent_run_id)
    tags, params = parent.data.tags, parent.data.params
    for tag in (
        "git.commit",
        "git.dirty",
        "version.torch",
        "version.ray",
        "version.mlflow",
        "hardware.cpu_count",
        "hardware.platform",
        "dataset.train.sha256",
        "dataset.heldout.sha256",
        "seed.training",
        "seed.search",
    ):
        assert tags.get(tag), tag
    assert tags["seed.training"] == "1" and tags["lora_sweep.kind"] == "sweep"
    assert tags["dataset.train.rows"] == "48" and tags["dataset.heldout.rows"] == "12"
    assert params["training.micro_batch_size"] == "4" and params["search.num_samples"] == str(
        NUM_TRIALS
    )
    artifacts = {a.path for a in client.list_artifacts(state.parent_run_id)}
    assert {"config.yaml", "search_space.json", "base_heldout_predictions.jsonl"} <= artifacts
    assert parent.info.status == "FINISHED"
    assert "base/heldout/loss" in parent.data.metrics and "best/heldout/loss" in parent.data.metrics
    assert tags["best_trial"] == state.best_trial().trial_id  # type: ignore[union-attr]


def test_child_runs_have_params_status_and_artifacts(sweep: dict[str, Any]) -> None:
    state: SweepState = sweep["state"]
    client: MlflowClient = sweep["client"]
    runs = child_runs(sweep)
    assert len(runs) == NUM_TRIALS
    assert {r.info.run_id for r in runs} == {t.run_id for t in state.trials.values()}
    for run in runs:
        record = state.trials[run.data.tags["lora_sweep.trial_id"]]
        assert run.data.tags["status"] == record.status
        assert run.info.status == "FINISHED"  # a pruned trial is no failure (KILLED reads as one)
        note = run.data.tags.get("mlflow.note.content", "")
        assert (record.status == "pruned") == note.startswith(
            f"Stopped early by the scheduler (ASHA) after rung {record.rungs}:"
        )
        for key in ("learning_rate", "lora_r", "lora_alpha", "num_epochs", "sequence_len"):
            assert key in run.data.params
        assert float(run.data.params["lora_alpha"]) == float(run.data.params["lora_r"]) * float(
            run.data.params["lora_alpha_ratio"]
        )
        # read as a person writes it (7.65e-05, not 7.65165826...e-05); the exact value kept
        lr = record.params["learning_rate"]
        shown = run.data.params["learning_rate"]
        assert float(shown) == pytest.approx(lr, rel=5e-3) and len(shown) <= 8
        assert bool(re.fullmatch(r"\d\.\d\de-0\d", shown)) == (lr < 1e-2)  # 3.63e-03
        # the run's name: the trial as every view names it, then its learning rate and rank
        assert run.info.run_name == f"{record.name} lr {shown} r {record.params['lora_r']}"
        assert record.number is not None and record.name.startswith(f"#{record.number} ")
        exact = client.download_artifacts(run.info.run_id, "params_exact.json")
        assert json.loads(Path(exact).read_text())["learning_rate"] == lr
    best = state.best_trial()
    assert best is not None
    adapter = {a.path for a in client.list_artifacts(best.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= adapter
    table = json.loads(
        Path(client.download_artifacts(best.run_id, "sample_generations.json")).read_text()
    )
    assert set(table["columns"]) == {"prompt", "reference", "prediction", "score"}
    assert len(table["data"]) == 3
    assert (Path(best.adapter_path) / "adapter_model.safetensors").is_file()  # type: ignore[arg-type]


def test_each_trial_ran_in_its_own_fresh_process(sweep: dict[str, Any]) -> None:
    pids = {rows[0]["trial/pid"] for rows in ray_results(sweep["state"]).values()}
    assert len(pids) == NUM_TRIALS and os.getpid() not in pids


def test_cost_per_trial_and_quality_per_device_hour(sweep: dict[str, Any]) -> None:
    """Each rung reports its trial's cost so far: wall seconds (growing), device-seconds (wall x
    the CPUs it holds) and peak memory; the parent run sums the sweep's device-hours and the best
    trial's gain over the base per device-hour."""
    state: SweepState = sweep["state"]
    for rows in ray_results(state).values():
        walls = [r["cost/wall_seconds"] for r in rows]
        assert walls == sorted(walls) and walls[0] > 0
        assert all(r["cost/device_seconds"] == pytest.approx(r["cost/wall_seconds"] * 1.0)
                   for r in rows)  # fmt: skip
        assert all(r["cost/peak_memory_mb"] > 50 for r in rows)  # a torch process's RSS
    hours = sum(rows[-1]["cost/device_seconds"] for rows in ray_results(state).values()) / 3600
    parent = sweep["client"].get_run(state.parent_run_id).data.metrics
    assert parent["cost/device_hours"] == pytest.approx(hours)
    best = state.best_trial()
    assert best is not None
    gain = state.base_metrics["heldout/loss"] - best.metrics["heldout/loss"]  # lower is better
    assert parent["cost/gain_per_device_hour"] == pytest.approx(gain / hours)


def test_status_and_best_read_the_sweep(
    sweep: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    state: SweepState = sweep["state"]
    state_dir = str(state.path.parent)
    assert main(["status", state.name, "--state-dir", state_dir]) == 0
    out = capsys.readouterr().out
    assert "base model" in out and all(trial_id in out for trial_id in state.trials)
    adapters = sum(f.stat().st_size for f in (state.path / "adapters").rglob("*") if f.is_file())
    disk = next(line for line in out.splitlines() if line.startswith("disk: "))
    assert "dev-h" in out and "gain over the base per sweep device-hour" in out
    assert f"adapters {adapters / 1e6:.1f} MB" in disk and "checkpoints 0.0 MB" in disk
    # the trials ended, completed or stopped early: their checkpoints went, their adapters stayed
    assert {t.status for t in state.trials.values()} <= {"completed", "pruned"}
    assert not list((state.path / "ray").rglob("checkpoint_*"))
    assert list((state.path / "ray" / "tune").glob("*/result.json"))  # Ray's records stay
    freed = sum(t.checkpoints_freed for t in state.trials.values())
    assert freed > adapters and f"{freed / 1e6:.1f} MB of checkpoints removed as " in disk
    assert all(Path(t.adapter_path or "").is_dir() for t in state.trials.values())
    assert main(["best", state.name, "--state-dir", state_dir, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["trial_id"] == state.best_trial().trial_id  # type: ignore[union-attr]
    assert Path(best["adapter_path"]).is_dir() and "heldout/loss" in best["metrics"]
    assert main(["best", "no-such-sweep", "--state-dir", state_dir]) == 2


def test_adapters_are_named_by_sweep_trial_or_run_id(sweep: dict[str, Any]) -> None:
    from sweeps.config import ConfigError
    from sweeps.serving.refs import resolve_adapter

    state: SweepState = sweep["state"]
    state_dir = state.path.parent
    best = state.best_trial()
    assert best is not None
    by_sweep = resolve_adapter(state.name, state_dir=state_dir)
    assert (by_sweep.trial_id, by_sweep.run_id) == (best.trial_id, best.run_id)
    assert by_sweep.path == Path(best.adapter_path or "")
    other = next(t for t in state.trials.values() if t.adapter_path and t is not best)
    assert resolve_adapter(f"{state.name}/{other.trial_id}", state_dir=state_dir).path == Path(
        other.adapter_path or ""
    )
    assert resolve_adapter(other.run_id, state_dir=state_dir).trial_id == other.trial_id
    with pytest.raises(ConfigError, match="has no trial 'nope'"):
        resolve_adapter(f"{state.name}/nope", state_dir=state_dir)


def test_the_mlflow_ui_gets_a_training_experiment_a_view_and_optunas_pictures(
    sweep: dict[str, Any], tmp_path: Path
) -> None:
    """What `sweep ui` opens on: a model-training experiment (not MLflow 3's GenAI dashboard), a
    saved view sorted by the objective with the parent expanded, and on the parent run Optuna's
    own pictures of the study and the trials table."""
    from tests.sweeps.conftest import assert_picture

    state: SweepState = sweep["state"]
    client: MlflowClient = sweep["client"]
    tags = client.get_experiment(state.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(tags[f"mlflow.sharedViewState.{state.name}"])
    assert view["orderByKey"] == "metrics.`heldout/loss`" and view["orderByAsc"] is True
    # grouped by the sweep (MLflow nests children only when sorted by start time), the group's
    # row carrying the best objective; the parent's row carries it too, and its status
    assert view["groupBy"] == {"aggregateFunction": "min", "groupByKeys": [
        {"mode": "tag", "groupByData": "sweep"}]}  # fmt: skip
    parent = client.get_run(state.parent_run_id).data
    best = state.best_trial()
    assert best is not None and parent.tags["sweep"] == state.name
    assert parent.metrics["heldout/loss"] == best.metrics["heldout/loss"]
    assert parent.tags["status"] == "completed"
    assert all(r.data.tags["sweep"] == state.name for r in child_runs(sweep))
    assert {"metrics.`heldout/loss`", "tags.`status`", "params.`learning_rate`"} <= set(
        view["selectedColumns"])  # fmt: skip
    assert "params.`num_epochs`" not in view["selectedColumns"]  # fixed: the same on every row
    pictures = {a.path for a in client.list_artifacts(state.parent_run_id, "sweep_plots")}
    # importances need IMPORTANCE_FLOOR completed trials (docs/perf.md (k)); this sweep has fewer
    names = ("optimization_history", "parallel_coordinate", "intermediate_values")
    assert pictures == {f"sweep_plots/{n}.png" for n in names}
    for name in names:
        assert_picture(Path(client.download_artifacts(state.parent_run_id,
                                                      f"sweep_plots/{name}.png", str(tmp_path))))  # fmt: skip
    table = json.loads(Path(client.download_artifacts(state.parent_run_id, "trials_table.json",
                                                      str(tmp_path))).read_text())  # fmt: skip
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert sorted(r["trial"] for r in rows) == sorted(state.trials)
    for row in rows:
        record = state.trials[row["trial"]]
        assert row["status"] == record.status and row["rungs"] == record.rungs
        assert row["heldout/loss"] == pytest.approx(record.metrics["heldout/loss"], rel=1e-3)
        assert row["learning_rate"] == pytest.approx(record.params["learning_rate"], rel=1e-3)
        assert row["duration_s"] == pytest.approx(record.metrics["cost/wall_seconds"], rel=1e-3)
