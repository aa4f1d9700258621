"""The sweep as pictures and a table, for its MLflow parent run.

The pictures are Optuna's own visualisations (``optuna.visualization.matplotlib``) of the sweep's
study, read from its storage: the optimisation history, parallel coordinates, hyperparameter
importances (fANOVA) and every trial's intermediate values, pruned trials included. The table is
one row per trial: status, rungs, duration, hyperparameters and the objective.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evals.metric_keys import COST_DEVICE_SECONDS, COST_WALL_SECONDS
from sweeps.tracking.state import RAY_TRIAL_ID, SweepState, TrialRecord, trial_name

if TYPE_CHECKING:
    import optuna
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PICTURES_DIR = "sweep_plots"  # the parent run's artefact folder
IMPORTANCES = "param_importances.png"
# fANOVA importances from fewer completed trials are not drawn: on 48 real LoRA configurations,
# random subsets of fewer named the wrong most-important knob too often (docs/perf.md (k))
IMPORTANCE_FLOOR = 16
# column -> one cell per trial: ids and statuses, counts, rounded values, a knob's value or None
TrialsTable = dict[str, list[str | float | None]]


@dataclass(frozen=True)
class Pictures:
    """What was drawn (file name -> title) and what could not be (title -> why)."""

    written: dict[str, str]
    skipped: dict[str, str]


def _plots(goals: Sequence[str]) -> list[tuple[str, str, Callable[[optuna.Study], Axes]]]:
    """Optuna's pictures of the study: of its first objective, plus the Pareto front when it
    has two or three (Optuna's own plot)."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as plots

    metric = goals[0]
    first = None if len(goals) == 1 else (lambda t: t.values[0])
    pictures = [
        (
            "optimization_history.png",
            "optimisation history",
            lambda s: plots.plot_optimization_history(s, target=first, target_name=metric),
        ),
        (
            "parallel_coordinate.png",
            "parallel coordinates",
            lambda s: plots.plot_parallel_coordinate(s, target=first, target_name=metric),
        ),
        (
            IMPORTANCES,
            "hyperparameter importances (fANOVA)",
            lambda s: plots.plot_param_importances(
                s, evaluator=FanovaImportanceEvaluator(seed=0), target=first, target_name=metric
            ),
        ),
    ]
    if len(goals) == 1:
        pictures.append(
            (
                "intermediate_values.png",
                "intermediate values per trial (pruned ones end early)",
                plots.plot_intermediate_values,
            )
        )
    elif len(goals) <= 3:
        pictures.append(
            (
                "pareto_front.png",
                "Pareto front",
                lambda s: plots.plot_pareto_front(s, target_names=list(goals)),
            )
        )
    return pictures


def write_study_pictures(
    storage_url: str, *, study_name: str, goals: Sequence[str], out_dir: Path
) -> Pictures:
    """Draw the study's pictures into ``out_dir``; a picture the study cannot give yet (too
    few finished trials, one knob only) is skipped with the reason."""
    import matplotlib.pyplot as plt
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    skipped: dict[str, str] = {}
    trials = study.get_trials(deepcopy=False)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    stepped = any(t.intermediate_values for t in trials)
    for filename, title, _ in _plots(goals):
        why_not = _cannot_draw(filename, complete=complete, stepped=stepped)
        if why_not:
            skipped[title] = why_not
            continue
        try:
            draw_picture(study, filename, goals=goals).savefig(out_dir / filename, dpi=110)
            written[filename] = title
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            skipped[title] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            plt.close("all")
    return Pictures(written=written, skipped=skipped)


def draw_picture(study: optuna.Study, filename: str, *, goals: Sequence[str]) -> Figure:
    """One of Optuna's pictures of the study, its trials named as the sweep names them, and the
    importances titled with the trials they rest on."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna

    plot = next(plot for name, _, plot in _plots(goals) if name == filename)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning on every plot
        axes = plot(study)
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    _name_trials(axes, trial_names(study.get_trials(deepcopy=False)))
    if filename == IMPORTANCES:
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        first.set_title(f"Hyperparameter importances (fANOVA), on {len(trials)} completed trials")
    figure = _figure(axes)
    figure.set_size_inches(9, 5.5)
    figure.tight_layout()
    return figure


def _cannot_draw(filename: str, *, complete: int, stepped: bool) -> str | None:
    """Why a picture is not drawn: Optuna draws empty axes (with only a warning) when the study
    has nothing to show, and importances from too few trials mislead (IMPORTANCE_FLOOR)."""
    if not complete:
        return "no completed trial"
    if filename == "intermediate_values.png" and not stepped:
        return "no trial reported a rung"
    if filename == IMPORTANCES and complete < IMPORTANCE_FLOOR:
        return (
            f"{complete} completed trials; importances need {IMPORTANCE_FLOOR} (below that "
            "they name the wrong knob too often: docs/perf.md (k))"
        )
    return None


def trial_names(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[int, str]:
    """Each study trial's name as every view of the sweep gives it (``TrialRecord.name``):
    ``#3 f65278a5``, or ``#3`` for a trial no Ray trial ran (a warm start's carried ones)."""
    return {t.number: trial_name(t.number, t.user_attrs.get(RAY_TRIAL_ID)) for t in trials}


def _name_trials(axes: Axes, names: dict[int, str]) -> None:
    """Optuna labels trials ``Trial3`` and its x axes ``Trial``: the sweep's own names instead."""
    for ax in axes.flat if hasattr(axes, "flat") else [axes]:
        if ax.get_xlabel() == "Trial":
            ax.set_xlabel("Trial # (as sweep status and optuna-dashboard number them)")
        renamed = False
        for line in ax.get_lines():
            found = re.fullmatch(r"Trial(\d+)", str(line.get_label()))
            if found:
                line.set_label(names.get(int(found[1]), f"#{found[1]}"))
                renamed = True
        if renamed and ax.get_legend() is not None:
            ax.legend(bbox_to_anchor=(1.05, 1), loc="upper left", borderaxespad=0.0)


def _figure(axes: Axes) -> Figure:
    """The figure a plot drew on (Optuna draws each on a figure of its own)."""
    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure(root=True)
    if figure is None:
        raise ValueError("the plot drew on no figure")
    return figure


def trials_table(state: SweepState) -> TrialsTable:
    """One row per trial, in trial order: the columns MLflow's table viewer shows."""
    records = sorted(state.trials.values(), key=lambda r: r.trial_id)
    knobs = sorted({key for r in records for key in r.params})
    table: TrialsTable = {
        "trial": [r.trial_id for r in records],
        "status": [_status(r) for r in records],
        "rungs": [r.rungs for r in records],
        "duration_s": [_rounded(r.metrics.get(COST_WALL_SECONDS)) for r in records],
        state.objective_metric: [_rounded(r.metrics.get(state.objective_metric)) for r in records],
    }
    for knob in knobs:
        table[knob] = [_rounded(r.params.get(knob)) for r in records]
    table["device_hours"] = [
        _rounded(r.metrics.get(COST_DEVICE_SECONDS, 0.0) / 3600) for r in records
    ]
    table["run_id"] = [r.run_id for r in records]
    return table


def _status(record: TrialRecord) -> str:
    return " ".join(
        filter(
            None,
            (record.status, "finalist" if record.finalist else "", "guard" if record.guard else ""),
        )
    )


def _rounded(value: str | float | None) -> str | float | None:
    """Floats to 4 significant digits (a table, not a ledger); other values as they are."""
    return float(f"{value:.4g}") if isinstance(value, float) else value
