"""How a sweep's MLflow runs are written, as plain data (no mlflow here; the facade,
``sweeps/tracking/mlflow_facade.py``, writes them): the tags that make a run a sweep's parent
or one of its trials, the statuses and the note of a pruned trial, the experiment view the UI
opens, params as text (and the exact floats beside them), table cells and the tables of held-out
generations, and the records read back (a recent sweep, a registered version, a run's summary)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from sweeps.tracking.provenance import is_secret, param_text

MAX_PARAM_LENGTH = 6000
EXACT_PARAMS = "params_exact.json"  # a run's float params as sampled (the UI shows 3 digits)
# MLflow has no "pruned" status, and KILLED reads as a failure: a trial the scheduler stopped
# early ran as planned, so its run is FINISHED, its ``status`` tag says ``pruned`` (a column of
# the sweep's view) and its description says why.
RUN_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}
PRUNED_NOTE = (
    "Stopped early by the scheduler (ASHA) after rung {rungs}: its value was not in "
    "the rung's top fraction. Not a failure; the status tag says pruned."
)
# MLflow 3's UI shows a GenAI dashboard unless the experiment is a model-training one
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the UI's shared views: ?viewStateShareKey=KEY
GROUP_TAG = "sweep"  # on a sweep's parent run and trials only: the UI's view groups by it
TRIALS_TABLE = "trials_table.json"  # the parent run's table of trials
GENERATIONS_TABLE = "sample_generations.json"  # an MLflow table of held-out generations


def view_state(*, sort_metric: str, ascending: bool, columns: list[str]) -> dict[str, object]:
    """The UI's saved view of an experiment (``SweepTracker.set_sweep_view`` says why it is
    grouped by sweep rather than nested)."""
    group = {
        "aggregateFunction": "min" if ascending else "max",
        "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}],
    }
    return {
        "orderByKey": f"metrics.`{sort_metric}`",
        "orderByAsc": ascending,
        "selectedColumns": columns,
        "groupBy": group,
        "groupsExpanded": {},
        "useGroupedValuesInCharts": False,
        "runsHiddenMode": "SHOW_ALL",
    }


def trial_tags(parent_run_id: str, *, sweep: str, trial_id: str) -> dict[str, str]:
    """A trial's child run's tags when it starts."""
    return {
        "mlflow.parentRunId": parent_run_id,
        "lora_sweep.kind": "trial",
        "lora_sweep.sweep": sweep,
        GROUP_TAG: sweep,
        "lora_sweep.trial_id": trial_id,
        "status": "running",
    }


def exact_params(params: Mapping[str, object]) -> dict[str, float]:
    """The float params whose text (``param_value_text``) rounds them, as sampled: kept in
    ``EXACT_PARAMS`` (secrets left out)."""
    return {
        key: value
        for key, value in params.items()
        if isinstance(value, float)
        and param_value_text(value) != repr(value)
        and not is_secret(key, value)
    }


def table_cell(value: object) -> object:
    """A table cell: text and numbers as they are, anything else as JSON text."""
    return (
        value
        if isinstance(value, (str, int, float, bool)) or value is None
        else json.dumps(value, default=str)
    )


def param_value_text(value: object) -> str:
    """A param as a person writes it (``param_text``; the exact floats go in ``EXACT_PARAMS``),
    a list or mapping as JSON."""
    if isinstance(value, float):
        return param_text(value)
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:MAX_PARAM_LENGTH]


def generations_table(sample: list[dict[str, object]]) -> dict[str, list[object]]:
    """Held-out generations as an MLflow table's columns."""
    return {
        key: [row[key] for row in sample] for key in ("prompt", "reference", "prediction", "score")
    }


@dataclass(frozen=True)
class RecentSweep:
    """A sweep ``sweep ui`` links to: its view, its best trial's run, its first picture."""

    experiment_id: str
    name: str
    parent_run_id: str
    best_run_id: str | None
    picture: str | None  # an artefact path under sweep_plots/ on the parent run


class VersionInfo(TypedDict):
    """A registered model version, as promote and adapter references read it."""

    name: str
    version: str
    run_id: str  # "" when the version came from no run
    tags: dict[str, str]
    aliases: list[str]


class RunSummary(TypedDict):
    """A run's latest metric values, params, tags and wall time (None while it runs)."""

    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    wall_seconds: float | None
