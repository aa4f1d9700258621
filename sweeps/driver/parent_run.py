"""What the sweep's MLflow parent run holds: the resolved config, provenance, the saved view,
the Optuna pictures, and the summary written when the driver stops.

The driver (``sweeps/driver/launch.py``) decides when; this module decides what. It writes through
``SweepTracker`` (``sweeps/tracking/mlflow_facade.py``, the one module that imports mlflow).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from evals.metric_keys import (
    BEST,
    COST_DEVICE_HOURS,
    COST_GAIN_PER_DEVICE_HOUR,
    second_metric,
    trials_count,
    with_group,
)
from sweeps.console import Say
from sweeps.driver.preflight import LaunchPlan
from sweeps.search.space import describe
from sweeps.tracking.provenance import provenance_tags
from sweeps.tracking.state import (
    RELAUNCH_CONFIG,
    SPEC_FILE,
    TERMINAL,
    WORK_DIR,
    SweepState,
    write_json_atomic,
)

if TYPE_CHECKING:
    from sweeps.tracking.mlflow_facade import SweepTracker


def data_paths(plan: LaunchPlan) -> dict[str, Path]:
    data = plan.spec.data
    paths = {"train": Path(data.train)}
    if data.heldout:
        paths["heldout"] = Path(data.heldout)
    return paths


def resolved_config(plan: LaunchPlan) -> dict[str, object]:
    """The config as the trials run it: data paths, task metric and objective resolved."""
    raw = plan.config.model_dump(mode="json")
    raw["data"]["train"] = plan.spec.data.train
    raw["data"]["heldout"] = plan.spec.data.heldout
    raw["objective"].update(metric=plan.objective_metric, mode=plan.objective_mode)
    raw["data"]["task_metric"] = plan.task_metric
    return raw


def relaunch_config(plan: LaunchPlan) -> dict[str, object]:
    """The config ``sweep resume`` re-checks: as launched, with absolute data paths (the
    prepared files, when a prepare: section made them; it is not run twice)."""
    data = {"train": plan.spec.data.train, "heldout": plan.spec.data.heldout}
    config = plan.config.model_copy(
        update={"prepare": None, "data": plan.config.data.model_copy(update=data)}
    )
    return config.model_dump(mode="json", exclude_unset=False)


def write_sweep_files(plan: LaunchPlan, directory: Path) -> dict[str, object]:
    """The sweep directory's config.yaml (resolved), launch_config.yaml (for resume) and
    trial_spec.json (for promote and compare); returns the resolved config."""
    resolved = resolved_config(plan)
    (directory / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (directory / RELAUNCH_CONFIG).write_text(yaml.safe_dump(relaunch_config(plan), sort_keys=False))
    write_json_atomic(directory / SPEC_FILE, plan.spec.record())
    return resolved


def sweep_tags(plan: LaunchPlan) -> dict[str, str]:
    """Provenance (commit, dirty flag, versions, hardware, digests, seeds) and what the sweep
    optimises."""
    config = plan.config
    seeds = {
        "training": config.training.seed,
        "search": config.search.seed,
        "split": config.data.split_seed,
    }
    tags = provenance_tags(seeds=seeds, digests=plan.digests)
    tags.update(
        {
            "base_model": config.base_model,
            "base_model.kind": plan.model_kind,
            "objective": ", ".join(f"{g.metric} ({g.mode})" for g in plan.goals),
            **{f"dataset.{name}.rows": str(count) for name, count in plan.rows.items()},
        }
    )
    benchmarks = plan.spec.benchmarks
    if benchmarks is not None:
        tags["benchmarks.tasks"] = ",".join(benchmarks.tasks) or "none"
        tags["benchmarks.skipped"] = "; ".join(benchmarks.skipped.values()) or "none"
    return tags


def sweep_artifacts(plan: LaunchPlan) -> dict[str, str]:
    artifacts = {"search_space.json": json.dumps(describe(plan.config), indent=2)}
    if plan.spec.benchmarks is not None:
        artifacts["benchmarks_plan.json"] = json.dumps(plan.spec.benchmarks.describe(), indent=2)
    return artifacts


def view_columns(plan: LaunchPlan) -> list[str]:
    """The columns of the sweep's MLflow view: objective, loss (a multi-objective sweep's other
    objectives instead), status, duration and the knobs
    the search varies (fixed ones are the same on every row)."""
    from sweeps.search.space import active_specs, fixed_value

    sides = [g.metric for g in plan.also] or [second_metric(plan.objective_metric)]
    knobs = [k for k, spec in active_specs(plan.config).items() if fixed_value(k, spec) is None]
    return [
        f"metrics.`{plan.objective_metric}`",
        *(f"metrics.`{m}`" for m in sides),
        "tags.`status`",
        "attributes.`Duration`",
        *(f"params.`{k}`" for k in knobs),
    ]


def log_sweep_pictures(
    state: SweepState, tracker: SweepTracker, *, storage_url: str, say: Say
) -> None:
    """Optuna's pictures of the study and the trials table on the parent run. They describe
    the sweep, never decide it: a failure to draw is one line, and the sweep ends as it was."""
    import tempfile

    from sweeps.tracking.study_report import PICTURES_DIR, trials_table, write_study_pictures

    try:
        with tempfile.TemporaryDirectory() as tmp:
            pictures = write_study_pictures(
                storage_url,
                study_name=state.name,
                out_dir=Path(tmp),
                goals=[g.metric for g in state.goals],
            )
            tracker.log_artifact_dirs(state.parent_run_id, {PICTURES_DIR: Path(tmp)})
        tracker.log_trials_table(state.parent_run_id, trials_table(state))
    except Exception as exc:  # a picture must not fail a finished sweep
        say(f"warning: the sweep's pictures were not logged to MLflow: {exc}")
        return
    for title, why in pictures.skipped.items():
        say(f"MLflow picture skipped, {title}: {why}")


def summary_metrics(state: SweepState) -> dict[str, float]:
    """The best trial's metrics (``best/*``, and the view's metric columns under their own
    names, so the parent's row in the UI reads as the sweep's best), the trial counts by
    status, and the cost."""
    best = state.best_trial()
    metrics = with_group(BEST, best.metrics) if best is not None else {}
    if best is not None:
        shown = [
            state.objective_metric,
            *([m for m, _ in state.also] or [second_metric(state.objective_metric)]),
        ]
        metrics.update({m: best.metrics[m] for m in shown if m in best.metrics})
    for status in ("completed", "pruned", "failed"):
        count = sum(t.status == status for t in state.trials.values())
        metrics[trials_count(status)] = float(count)
    metrics[COST_DEVICE_HOURS] = state.device_hours()
    gain = state.gain_per_device_hour()
    if gain is not None:
        metrics[COST_GAIN_PER_DEVICE_HOUR] = gain
    return metrics


def end_parent_run(state: SweepState, tracker: SweepTracker) -> None:
    """The summary on the parent run, its status (FINISHED, or KILLED when the sweep did not
    complete), and state.json saved; a completed sweep's leftover work files are cleared."""
    best = state.best_trial()
    tags = {"status": state.status, "trials": str(len(state.trials))}
    if best is not None:
        tags.update(
            {
                "best_trial": best.trial_id,
                "best_run_id": best.run_id,
                "best_adapter": best.adapter_path or "",
            }
        )
    if state.status == "completed":  # what killed workers left behind
        shutil.rmtree(state.path / WORK_DIR, ignore_errors=True)
    run_status = "FINISHED" if state.status == "completed" else "KILLED"
    ended = sum(t.status in TERMINAL for t in state.trials.values())
    tracker.end_sweep(
        state.parent_run_id,
        status=run_status,
        metrics=summary_metrics(state),
        tags=tags,
        step=ended,
    )
    state.save()
