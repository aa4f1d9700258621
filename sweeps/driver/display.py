"""The live table of trials during ``sweep launch``, and the tables of ``status`` and ``best``.

The table fits the console: each column has a priority, and the lowest are hidden (and named
under the table) until the rest fit, so no number is ever cut. A legend under it says what the
marks mean and which held-out rows each metric was computed on: a rung scores the task metric
(field_f1, exact_match) on the ``evaluation.generation_samples`` rows it generates, and the loss
on every held-out row. What is said of the best trial under the table is
``sweeps/driver/best_trial.py``.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from evals.metric_keys import (
    COST_DEVICE_SECONDS,
    COST_WALL_SECONDS,
    LOWER_IS_BETTER,
    TRAIN,
    group_of,
    heldout_metric,
    second_metric,
    short_name,
)
from sweeps.tracking.state import SweepState, TrialRecord
from trainers.spec import TrialSpec

SHOWN_PARAMS = (
    ("learning_rate", "lr"),
    ("lora_r", "r"),
    ("lora_alpha", "alpha"),
    ("num_epochs", "epochs"),
    ("sequence_len", "seq_len"),
)
SEARCHED_ONLY = (  # shown when the trials differ in them
    ("micro_batch_size", "micro_batch"),
    ("gradient_accumulation_steps", "grad_accum"),
    ("lora_target_modules", "targets"),
)
STATUS_STYLE = {"running": "cyan", "completed": "green", "pruned": "yellow", "failed": "red"}
EVERY_ROW_METRICS = LOWER_IS_BETTER  # the other heldout/ ones: generated
PIPE_WIDTH = 200  # a pipe or a log without $COLUMNS: wide enough for every column
KEEP = 100  # a column of this priority is never hidden
BEST_MARK = "*"
ABSENT = "-"


@dataclass(frozen=True)
class Column:
    key: str  # a params key, a metrics key, or one of trial, status, rung, time, dev-h
    header: str
    priority: int  # the lowest is hidden first when the table is too wide; KEEP: never
    justify: Literal["left", "right"] = "right"


@dataclass(frozen=True)
class Scope:
    """The held-out rows a metric was computed on: a header line and the legend's words."""

    header: str
    words: str


@dataclass(frozen=True)
class Fitted:
    """A table cut down to the console's width, and the columns left out of it."""

    table: Table
    shown: list[Column]
    hidden: list[Column]
    width: int


# --------------------------------------------------------------------------- cells
def fmt_value(value: object) -> str:
    """A parameter or metric as the table shows it: 3-4 significant digits, whole."""
    if value is None:
        return ABSENT
    if isinstance(value, float):
        if abs(value) < 1e-2 or abs(value) >= 1e4:
            return f"{value:.3g}"
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def duration(seconds: float | None) -> str:
    """Wall time as ``42s``, ``1m05s`` or ``2h03m``."""
    if seconds is None:
        return ABSENT
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def trial_duration(record: TrialRecord) -> str:
    """The trial's wall time up to its last rung (setup, training, evaluation, checkpoints)."""
    return duration(record.metrics.get(COST_WALL_SECONDS))


def _device_hours(record: TrialRecord) -> str:
    """The trial's device-hours so far (GPUs, or CPUs, held x wall time)."""
    seconds = record.metrics.get(COST_DEVICE_SECONDS)
    return ABSENT if seconds is None else f"{seconds / 3600:.3g}"


def _status(record: TrialRecord) -> str:
    cell = f"[{STATUS_STYLE.get(record.status, 'white')}]{record.status}[/]"
    cell += " final" if record.finalist else ""  # re-scored on the full benchmark sets
    return cell + (" [red]guard[/]" if record.guard else "")  # regressed on a benchmark


# --------------------------------------------------------------------------- which rows
def is_generated(metric: str) -> bool:
    """Whether a rung computes the metric on generated answers (not on every row's loss)."""
    return heldout_metric(metric) is not None and metric not in EVERY_ROW_METRICS


def generation_samples(state: SweepState) -> tuple[bool, int | None]:
    """(known, rows): the held-out rows a rung generates, from the sweep's trial_spec.json;
    rows None means every row. Unknown for a sweep without the file."""
    try:
        spec = TrialSpec.from_record(json.loads(state.spec_path.read_text()))
    except (OSError, ValueError):
        return False, None
    return True, spec.evaluation.generation_samples


def metric_scope(state: SweepState, metric: str) -> Scope:
    if group_of(metric) == TRAIN:
        return Scope("", "mean over the training batches since the previous rung")
    if not is_generated(metric):
        return Scope("all rows", "on every held-out row")
    known, rows = generation_samples(state)
    if not known:
        return Scope("sample", "on the held-out rows generated at each rung")
    if rows is None:
        return Scope("all rows", "generated on every held-out row at each rung")
    return Scope(
        f"{rows} rows",
        f"generated on the first {rows} held-out rows at each rung (all of them, if fewer)",
    )


# --------------------------------------------------------------------------- the table
def columns(state: SweepState) -> list[Column]:
    """Every column, in the order shown; priorities say which go first when space is short."""
    metric = state.objective_metric
    priority = {
        "lr": 60,
        "r": 50,
        "alpha": 30,
        "epochs": 40,
        "seq_len": 20,
        "micro_batch": 25,
        "grad_accum": 35,
        "targets": 45,
    }
    varied = [
        (key, short)
        for key, short in SEARCHED_ONLY
        if len({str(t.params.get(key)) for t in state.trials.values()}) > 1
    ]
    return [
        Column("trial", "trial", KEEP, "left"),
        Column("status", "status", 90, "left"),
        *(Column(key, short, priority[short]) for key, short in (*SHOWN_PARAMS, *varied)),
        Column("rung", "rung", 55),
        Column(metric, _header(state, metric), KEEP),
        *(Column(side, _header(state, side), 80) for side in side_metrics(state)),
        Column("time", "time", 70),
        Column("dev-h", "dev-h", 45),
    ]


def _header(state: SweepState, metric: str) -> str:
    scope = metric_scope(state, metric).header
    return f"{short_name(metric)}\n{scope}" if scope else short_name(metric)


def rows(state: SweepState) -> list[dict[str, str]]:
    """Base model first, then trials best-first by the objective; cells keyed as columns are."""
    metric, sides = state.objective_metric, side_metrics(state)
    out = []
    if state.base_metrics:  # its other cells: ABSENT
        base = state.base_metrics
        out.append(
            {
                "trial": "base model",
                metric: fmt_value(base.get(metric)),
                **{side: fmt_value(base.get(side)) for side in sides},
            }
        )
    best = state.best_trial()
    for record in sorted_trials(state):
        mark = f" {BEST_MARK}" if best and record.trial_id == best.trial_id else ""
        out.append(
            {
                "trial": escape(record.name) + mark,
                "status": _status(record),
                **{
                    key: fmt_value(record.params.get(key))
                    for key, _ in (*SHOWN_PARAMS, *SEARCHED_ONLY)
                },
                "rung": str(record.rungs),
                metric: fmt_value(record.metrics.get(metric)),
                **{side: fmt_value(record.metrics.get(side)) for side in sides},
                "time": trial_duration(record),
                "dev-h": _device_hours(record),
            }
        )
    return out


def build_table(
    state: SweepState, shown: list[Column], cells: list[dict[str, str]], *, title: str | None = None
) -> Table:
    """The table of the given columns; a cell too wide folds onto a second line, never cut."""
    table = Table(
        title=title or f"sweep {state.name}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in shown:
        table.add_column(column.header, justify=column.justify, overflow="fold")
    for row in cells:
        table.add_row(*(row.get(column.key, ABSENT) for column in shown))
    return table


def trials_table(state: SweepState, *, title: str | None = None) -> Table:
    """Every column, however wide (what a wide log or a test reads)."""
    return build_table(state, columns(state), rows(state), title=title)


def natural_width(table: Table, console: Console) -> int:
    """The width the table takes with every cell on one line."""
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def fit_table(state: SweepState, console: Console, *, width: int | None = None) -> Fitted:
    """The table with its lowest-priority columns hidden until it fits ``width`` (the console's
    by default); the columns of priority KEEP stay, folding their cells if nothing else helps."""
    width = width or console.width
    shown, cells, hidden = columns(state), rows(state), []
    table = build_table(state, shown, cells)
    while natural_width(table, console) > width:
        droppable = [column for column in shown if column.priority < KEEP]
        if not droppable:
            break
        lowest = min(droppable, key=lambda column: column.priority)
        shown.remove(lowest)
        hidden.append(lowest)
        table = build_table(state, shown, cells)
    return Fitted(table=table, shown=shown, hidden=hidden, width=width)


# --------------------------------------------------------------------------- under the table
def legend(state: SweepState, shown: list[Column]) -> list[str]:
    """What the marks in the table mean, and which rows each shown metric was computed on."""
    trials = state.trials.values()
    finalists = any(t.finalist for t in trials)
    lines = []
    if state.best_trial() is not None:
        which = "a finalist" if finalists else "completed"
        front = "; picked from the Pareto front" if state.multi_objective else ""
        lines.append(f"{BEST_MARK} best eligible trial ({which}, not flagged by the guard{front})")
    if finalists:
        lines.append("final = a finalist, re-scored on the full benchmark sets after the sweep")
    if any(t.guard for t in trials):
        lines.append("guard = regressed on a benchmark beyond its margin; never the best")
    metrics = [c.key for c in shown if group_of(c.key)]  # the metrics' columns
    lines.append("; ".join(f"{short_name(m)}: {metric_scope(state, m).words}" for m in metrics))
    command = every_row_command(state, "TRIAL") if state.objective_metric in metrics else None
    return [*lines, command] if command else lines


def side_metrics(state: SweepState) -> list[str]:
    """The metric columns beside the objective: a multi-objective sweep's other objectives, else
    the loss that shows how training went (``second_metric``)."""
    if state.multi_objective:
        return [g.metric for g in state.goals[1:]]
    return [second_metric(state.objective_metric)]


def every_row_command(state: SweepState, trial: str) -> str | None:
    """How to have a trial's generated metric on every held-out row, where a rung had fewer."""
    metric = state.objective_metric
    if not is_generated(metric) or generation_samples(state) == (True, None):
        return None
    return f"{short_name(metric)} on every held-out row: sweep compare {state.name}/{trial} base"


def hidden_note(fitted: Fitted) -> str | None:
    if not fitted.hidden:
        return None
    names = ", ".join(column.header.split("\n")[0] for column in fitted.hidden)
    return (
        f"(hidden at {fitted.width} columns: {names}; widen the terminal or set "
        f"COLUMNS={PIPE_WIDTH})"
    )


def trials_view(state: SweepState, console: Console) -> RenderableType:
    """The fitted table, what it hides, and its legend."""
    fitted = fit_table(state, console)
    notes = [note for note in (hidden_note(fitted), *legend(state, fitted.shown)) if note]
    lines = [line for note in notes for line in wrapped_note(note, fitted.width)]
    return Group(fitted.table, *(Text(line, no_wrap=True, overflow="ignore") for line in lines))


def wrapped_note(note: str, width: int) -> list[str]:
    """A note wrapped between words; a command in it (``...: sweep ...``) that does not fit
    beside its words goes whole on a line of its own, to be copied in one piece."""
    prose, sep, command = note.partition(": sweep ")
    if not sep or len(note) <= width:
        return wrap(note, width)
    return [*wrap(f"{prose}:", width), f"sweep {command}"]


def wrap(text: str, width: int, *, indent: int = 0) -> list[str]:
    """Prose wrapped between words only: a number, a path or a URI is never split (one longer
    than the width stands whole on its own line)."""
    pad = " " * indent
    return textwrap.wrap(
        text,
        width,
        initial_indent=pad,
        subsequent_indent=pad,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [pad]


def sorted_trials(state: SweepState) -> list[TrialRecord]:
    sign = -1 if state.objective_mode == "max" else 1
    missing = float("inf")

    def key(record: TrialRecord) -> tuple[int, float]:
        value = record.metrics.get(state.objective_metric)
        rank = {"completed": 0, "running": 1, "pruned": 2, "failed": 3}.get(record.status, 4)
        return rank, sign * value if value is not None else missing

    return sorted(state.trials.values(), key=key)


# --------------------------------------------------------------------------- consoles
class LiveTable:
    """A table redrawn in place on a terminal; one line per event otherwise (CI logs, pipes)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live: Live | None = None

    def __enter__(self) -> LiveTable:
        if self.console.is_terminal:
            # transient: the final table is printed once more when the sweep ends
            self.live = Live(console=self.console, auto_refresh=False, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def refresh(self, state: SweepState, record: TrialRecord, what: str) -> None:
        """The table redrawn, or one line: the trial as every view names it, what happened to
        it (``started``, ``rung 2``, ``completed``), and its objective so far."""
        if self.live is not None:
            self.live.update(trials_view(state, self.console), refresh=True)
            return
        metric = state.objective_metric
        value = fmt_value(record.metrics.get(metric))
        self.console.print(
            f"[{state.name}] {record.name} {what}: {metric}={value}", highlight=False, markup=False
        )


class StdoutConsole(Console):
    """A console whose reader may leave (``sweep status X | head``): the write's BrokenPipeError
    reaches ``sweeps.cli.main.main``, which ends quietly, instead of rich's exit with status 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def plain_console() -> Console:
    """A console for stdout: the terminal's width, or $COLUMNS when set (a pipe too); a pipe or
    log without $COLUMNS gets PIPE_WIDTH, so its rows keep every column."""
    columns_set = os.environ.get("COLUMNS", "").isdigit()
    width = None if sys.stdout.isatty() or columns_set else PIPE_WIDTH
    return StdoutConsole(file=sys.stdout, width=width)


def say(console: Console, text: str, *, indent: int = 0, whole: bool = False) -> None:
    """A line of prose on the console, wrapped between words at its width (see ``wrap``);
    ``whole``: a command to copy, on one line however long."""
    lines = [" " * indent + text] if whole else wrap(text, console.width, indent=indent)
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def print_table(state: SweepState, console: Console | None = None) -> None:
    console = console or plain_console()
    console.print(trials_view(state, console), crop=False)
