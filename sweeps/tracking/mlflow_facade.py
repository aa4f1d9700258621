"""The only module that imports mlflow. The driver is the only MLflow writer.

The sweep is the parent run; each trial is a child run created with an explicit id that the sweep
state keeps, so nothing is nested by accident across processes (ray#19978, ray#30649). What the
runs hold (tags, statuses, the UI's view, params as text, the records read back) is plain data in
``sweeps/tracking/run_records.py``; this module writes and reads it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from evals.metric_keys import RUNG
from sweeps.tracking.artifact_paths import (
    checked_artifact_path,
    default_artifact_root,
    prepare_store,
)
from sweeps.tracking.provenance import flatten, is_secret, redacted
from sweeps.tracking.run_records import (
    EXACT_PARAMS,
    EXPERIMENT_KIND,
    GENERATIONS_TABLE,
    GROUP_TAG,
    PRUNED_NOTE,
    RUN_STATUS,
    TRIALS_TABLE,
    VIEW_TAG_PREFIX,
    RecentSweep,
    RunSummary,
    VersionInfo,
    exact_params,
    generations_table,
    param_value_text,
    table_cell,
    trial_tags,
    view_state,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from sweeps.tracking.study_report import TrialsTable

# a progress bar per artefact download would bury the console (promote and compare download)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
Params = Mapping[str, object]  # a run's params before they are flattened and written as text
Texts = dict[str, str]  # tags, or text artefacts by file name


class SweepTracker:
    """Parent/child runs with explicit ids; metrics logged in batches."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO lines under the live table
        prepare_store(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=default_artifact_root(tracking_uri)
            )
        else:
            self.experiment_id = found.experiment_id
        for key, value in EXPERIMENT_KIND.items():  # a kind the user chose stays
            if found is None or key not in found.tags:
                self.client.set_experiment_tag(self.experiment_id, key, value)

    # ------------------------------------------------------------------ the sweep (parent)
    def start_sweep(self, name: str, *, config: Params, tags: Texts, artifacts: Texts) -> str:
        """The parent run: the config as params and as config.yaml, secrets and URI passwords
        hidden in both, never logged."""
        tags = {"lora_sweep.kind": "sweep", "lora_sweep.sweep": name, GROUP_TAG: name, **tags}
        shown = yaml.safe_dump(redacted(config), sort_keys=False)
        return self._new_run(
            name, tags=tags, params=flatten(config), artifacts={"config.yaml": shown, **artifacts}
        )

    def set_sweep_view(
        self, key: str, *, sort_metric: str, ascending: bool, columns: list[str]
    ) -> None:
        """An experiment view the UI opens with ``?viewStateShareKey=KEY``: runs grouped by the
        sweep they belong to (``GROUP_TAG``), sorted by the objective, with ``columns``
        (``metrics.`k```, ``params.`k```, ``tags.`k```, ``attributes.`Duration```) shown.

        MLflow 3.17's run table nests children under their parent only when sorted by start
        time (``shouldNestChildrenAndFetchParents``), and a shared view drops ``runsExpanded``,
        so a nested view opens flat or folded. A group opens unfolded, sorted by the objective:
        its row carries the best value (min or max as the objective goes), the parent run and
        the trials under it, best first; runs of no sweep (compare, judge, human, eval) wait in
        MLflow's folded "Additional runs" group."""
        state = view_state(sort_metric=sort_metric, ascending=ascending, columns=columns)
        self.client.set_experiment_tag(self.experiment_id, VIEW_TAG_PREFIX + key, json.dumps(state))

    def log_trials_table(self, run_id: str, table: TrialsTable) -> None:
        """The sweep's trials as an MLflow table artefact, replaced whole: log_table appends to
        a table already there, so a resumed sweep writes the file in log_table's own format."""
        if not any(a.path == TRIALS_TABLE for a in self.client.list_artifacts(run_id)):
            self.client.log_table(run_id, data=table, artifact_file=TRIALS_TABLE)
            return
        import pandas as pd

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / TRIALS_TABLE
            pd.DataFrame(table).to_json(path, orient="split", index=False, date_format="iso")
            self.client.log_artifact(run_id, str(path))

    def reopen(self, run_id: str) -> None:
        """A resumed sweep's parent run is running again (never a second parent run)."""
        self.client.update_run(run_id, status="RUNNING")

    def end_sweep(
        self,
        run_id: str,
        *,
        status: str,
        metrics: dict[str, float],
        tags: dict[str, str],
        step: int,
    ) -> None:
        """The sweep's summary at ``step`` (its ended trials), its tags, and the run's end."""
        self.log_metrics_once(run_id, metrics, step=step)
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------------ trials (children)
    def start_trial(
        self,
        parent_run_id: str,
        *,
        sweep: str,
        trial_id: str,
        params: Mapping[str, object],
        name: str | None = None,
    ) -> str:
        """A trial's child run, named ``name`` (by default its Ray trial id)."""
        tags = trial_tags(parent_run_id, sweep=sweep, trial_id=trial_id)
        return self._new_run(
            name or trial_id, tags=tags, params={**params, "trial_id": trial_id}, artifacts={}
        )

    def child_trial_runs(self, parent_run_id: str) -> dict[str, str]:
        """``{run_id: trial_id}`` of the parent's child runs."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
            max_results=50_000,
        )
        return {r.info.run_id: r.data.tags.get("lora_sweep.trial_id", "") for r in runs}

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def last_logged_step(self, run_id: str) -> int:
        """The highest step the run's ``rung`` metric was logged at (-1: none yet)."""
        return max((m.step for m in self.client.get_metric_history(run_id, RUNG)), default=-1)

    def log_metrics_once(self, run_id: str, metrics: dict[str, float], *, step: int) -> None:
        """Log the metrics the run does not yet hold at ``step``: what a driver killed after
        logging them logs again on resume is dropped (each step of a metric once)."""
        held = self.client.get_run(run_id).data.metrics
        logged = {
            key
            for key in metrics
            if key in held
            and any(m.step == step for m in self.client.get_metric_history(run_id, key))
        }
        self.log_metrics(run_id, {k: v for k, v in metrics.items() if k not in logged}, step=step)

    def log_metrics(self, run_id: str, metrics: dict[str, float], *, step: int) -> None:
        now = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and math.isfinite(float(value))
        ]
        for start in range(0, len(entries), 1000):
            self.client.log_batch(run_id, metrics=entries[start : start + 1000])

    def end_trial(
        self,
        run_id: str,
        *,
        status: str,
        reason: str | None = None,
        adapter_dir: Path | None = None,
        predictions: list[dict[str, object]] | None = None,
        logged_generations: int = 8,
        artifact_dirs: dict[str, Path] | None = None,
    ) -> None:
        tags = [RunTag("status", status)]
        if status == "pruned":
            rungs = int(
                max((m.value for m in self.client.get_metric_history(run_id, RUNG)), default=0)
            )
            tags.append(RunTag("mlflow.note.content", PRUNED_NOTE.format(rungs=rungs)))
        if reason:
            tags.append(RunTag("failure_reason", reason[:5000]))
        self.client.log_batch(run_id, tags=tags)
        if adapter_dir is not None and adapter_dir.is_dir():
            self.client.log_artifacts(run_id, str(adapter_dir), artifact_path="adapter")
        if predictions:
            self.client.log_text(
                run_id,
                "\n".join(json.dumps(p) for p in predictions) + "\n",
                "heldout_predictions.jsonl",
            )
            self._log_generations_once(run_id, predictions[:logged_generations])
        self.log_artifact_dirs(run_id, artifact_dirs or {})
        self.client.set_terminated(run_id, status=RUN_STATUS.get(status, "FAILED"))

    def _log_generations_once(self, run_id: str, sample: list[dict[str, object]]) -> None:
        """The sample generations as an MLflow table. log_table appends to a table already
        there, so a trial ended twice (a driver killed before it saved that) logs it once."""
        if any(a.path == GENERATIONS_TABLE for a in self.client.list_artifacts(run_id)):
            return
        self.client.log_table(
            run_id, data=generations_table(sample), artifact_file=GENERATIONS_TABLE
        )

    def log_texts(self, run_id: str, artifacts: dict[str, str]) -> None:
        """Text artefacts (file name -> content) on a run."""
        for filename, text in artifacts.items():
            self.client.log_text(run_id, text, checked_artifact_path(filename))

    def log_artifact_dirs(self, run_id: str, directories: dict[str, Path]) -> None:
        """Each local directory under its artefact path (a finished run accepts them too)."""
        for artifact_path in directories:
            checked_artifact_path(artifact_path)
        for artifact_path, directory in directories.items():
            if directory.is_dir():
                self.client.log_artifacts(run_id, str(directory), artifact_path=artifact_path)

    def log_datasets(self, run_id: str, datasets: dict[str, tuple[str, str, int]]) -> None:
        """MLflow dataset tracking: ``{name: (path, sha256, rows)}``, train as the training
        context and the rest as evaluation."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(
                    name=name,
                    digest=digest[:36],
                    source_type="local",
                    source=json.dumps({"uri": path}),
                    profile=json.dumps({"num_rows": rows}),
                ),
                tags=[
                    InputTag("mlflow.data.context", "training" if name == "train" else "evaluation")
                ],
            )
            for name, (path, digest, rows) in datasets.items()
        ]
        self.client.log_inputs(run_id, datasets=inputs)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])

    # ------------------------------------------------------------------ standalone runs
    def log_run(
        self,
        name: str,
        *,
        params: Mapping[str, object],
        metrics: dict[str, float],
        tags: dict[str, str],
        artifacts: dict[str, str],
        tables: Mapping[str, list[dict[str, object]]] | None = None,
    ) -> str:
        """One finished run (e.g. ``sweep eval``), written in one go; ``tables``: rows the MLflow
        UI shows as a table (its artefact viewer), by artefact file name (``.json``)."""
        run_id = self._new_run(name, tags=tags, params=params, artifacts=artifacts)
        for filename, rows in (tables or {}).items():
            columns = list(dict.fromkeys(key for row in rows for key in row))
            data = {c: [table_cell(row.get(c)) for row in rows] for c in columns}
            self.client.log_table(run_id, data=data, artifact_file=checked_artifact_path(filename))
        self.log_metrics(run_id, metrics, step=0)
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    # ------------------------------------------------------------------ helpers
    def _new_run(self, name: str, *, tags: Texts, params: Params, artifacts: Texts) -> str:
        """Create a run with its tags, params (secrets left out) and text artefacts."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = str(run.info.run_id)
        self._log_params(run_id, params)
        exact = exact_params(params)
        if exact:  # the UI shows 3 significant digits; the values as sampled are kept here
            artifacts = {**artifacts, EXACT_PARAMS: json.dumps(exact, indent=2)}
        for filename, text in artifacts.items():
            self.client.log_text(run_id, text, checked_artifact_path(filename))
        return run_id

    def _log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        entries = [
            Param(key, param_value_text(value))
            for key, value in params.items()
            if not is_secret(key, value)
        ]
        for start in range(0, len(entries), 100):
            self.client.log_batch(run_id, params=entries[start : start + 100])


def recent_sweeps(tracking_uri: str, *, limit: int = 5) -> list[RecentSweep]:
    """The newest sweeps that saved a view, newest first."""
    from sweeps.tracking.study_report import PICTURES_DIR

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = {e.experiment_id: e for e in client.search_experiments()}
    every = client.search_runs(
        list(experiments),
        filter_string="tags.`lora_sweep.kind` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    runs = [
        r
        for r in every
        if VIEW_TAG_PREFIX + r.info.run_name in experiments[r.info.experiment_id].tags
    ][:limit]
    found = []
    for run in runs:
        pictures = [a.path for a in client.list_artifacts(run.info.run_id, PICTURES_DIR)]
        found.append(
            RecentSweep(
                run.info.experiment_id,
                run.info.run_name,
                run.info.run_id,
                run.data.tags.get("best_run_id"),
                min(pictures, default=None),
            )
        )
    return found


# --------------------------------------------------------------------------- model registry
class ModelRegistry:
    """Registered models, versions and aliases (never stages: deprecated since MLflow 2.9)."""

    def __init__(self, tracking_uri: str) -> None:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        prepare_store(tracking_uri)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def by_alias(self, name: str, alias: str) -> VersionInfo | None:
        """The version an alias points at (version, run_id, tags), or None."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        return _version_info(found)

    def version(self, name: str, version: str) -> VersionInfo | None:
        """A version (version, run_id, tags), or None."""
        from mlflow.exceptions import MlflowException

        try:
            return _version_info(self.client.get_model_version(name, version))
        except MlflowException:
            return None

    def holding_alias(self, run_id: str, alias: str) -> VersionInfo | None:
        """The version ``alias`` points at whose run is ``run_id`` (in any registered model)."""
        for name in self.models_with_alias(alias):
            found = self.by_alias(name, alias)
            if found is not None and found["run_id"] == run_id:
                return found
        return None

    def models_with_alias(self, alias: str) -> list[str]:
        """Names of the registered models that have ``alias``."""
        return sorted(m.name for m in self.client.search_registered_models() if alias in m.aliases)

    def register(
        self,
        name: str,
        *,
        run_id: str,
        files: Path,
        artifact_path: str,
        tags: dict[str, str],
        description: str,
    ) -> str:
        """Log ``files`` on the run and register them as a new version of ``name``."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, description="LoRA adapters promoted by `sweep promote` (lora-sweep)."
            )
        self.client.log_artifacts(run_id, str(files), artifact_path=artifact_path)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        created = self.client.create_model_version(
            name,
            source=source,
            run_id=run_id,
            tags={k: v[:5000] for k, v in tags.items()},
            description=description,
        )
        return str(created.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def download(self, name: str, version: str, destination: Path) -> Path:
        """A version's files (adapter, tokenizer, eval summary) into ``destination``."""
        import mlflow.artifacts

        destination.mkdir(parents=True, exist_ok=True)
        source = self.client.get_model_version_download_uri(name, version)
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(destination), tracking_uri=self.tracking_uri
        )
        return Path(path)


def _version_info(found: ModelVersion) -> VersionInfo:
    return {
        "name": found.name,
        "version": str(found.version),
        "run_id": found.run_id or "",
        "tags": dict(found.tags or {}),
        "aliases": list(found.aliases or []),
    }


# --------------------------------------------------------------------------- reading runs
class RunReader:
    """What reports read back from the store: a run's summary, metric histories, artefacts."""

    def __init__(self, tracking_uri: str) -> None:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def summary(self, run_id: str) -> RunSummary:
        """Metrics (latest values), params, tags and wall time in seconds."""
        run = self.client.get_run(run_id)
        info = run.info
        wall = (info.end_time - info.start_time) / 1000 if info.end_time else None
        return {
            "metrics": dict(run.data.metrics),
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "wall_seconds": wall,
        }

    def history(self, run_id: str, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
        """Each metric's (step, value) points, in step order."""
        out = {}
        for key in keys:
            points = self.client.get_metric_history(run_id, key)
            if points:
                out[key] = sorted((int(p.step), float(p.value)) for p in points)
        return out

    def download(self, run_id: str, artifact_path: str, destination: Path) -> Path | None:
        """A run's artefact directory, or None when the run has none at that path."""
        if not self.client.list_artifacts(run_id, checked_artifact_path(artifact_path)):
            return None
        destination.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, artifact_path, str(destination)))
