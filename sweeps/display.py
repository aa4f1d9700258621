"""The live table of trials during ``sweep launch``, and the tables of ``status`` and ``best``."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sweeps.state import SweepState, TrialRecord

SHOWN_PARAMS = (
    ("learning_rate", "lr"),
    ("lora_r", "r"),
    ("lora_alpha", "alpha"),
    ("num_epochs", "epochs"),
    ("sequence_len", "seq_len"),
)
STATUS_STYLE = {"running": "cyan", "completed": "green", "pruned": "yellow", "failed": "red"}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return (
            f"{value:.3g}"
            if abs(value) < 1e-2 or abs(value) >= 1e4
            else f"{value:.4f}".rstrip("0").rstrip(".")
        )
    return str(value)


def trials_table(state: SweepState, *, title: str | None = None) -> Table:
    """Base model first, then trials best-first by the objective."""
    metric = state.objective_metric
    second = "train/loss" if metric == "heldout/loss" else "heldout/loss"
    table = Table(title=title or f"sweep {state.name}", title_justify="left")
    for header in (
        "trial",
        "status",
        *(short for _, short in SHOWN_PARAMS),
        "rung",
        metric,
        second,
        "dev-h",
    ):
        table.add_column(header, justify="right" if header not in ("trial", "status") else "left")
    if state.base_metrics:
        table.add_row(
            "base model",
            "-",
            *("-" for _ in SHOWN_PARAMS),
            "-",
            _fmt(state.base_metrics.get(metric)),
            _fmt(state.base_metrics.get(second)),
            "-",
        )
    best = state.best_trial()
    for record in sorted_trials(state):
        name = (
            f"{record.trial_id} *" if best and record.trial_id == best.trial_id else record.trial_id
        )
        status = f"[{STATUS_STYLE.get(record.status, 'white')}]{record.status}[/]"
        status += " finalist" if record.finalist else ""
        status += " [red]guard[/]" if record.guard else ""  # regressed on a benchmark: never best
        table.add_row(
            name,
            status,
            *(_fmt(record.params.get(k)) for k, _ in SHOWN_PARAMS),
            str(record.rungs),
            _fmt(record.metrics.get(metric)),
            _fmt(record.metrics.get(second)),
            _device_hours(record),
        )
    return table


def _device_hours(record: TrialRecord) -> str:
    """The trial's device-hours so far (GPUs, or CPUs, held x wall time)."""
    seconds = record.metrics.get("cost/device_seconds")
    return "-" if seconds is None else f"{seconds / 3600:.3g}"


def sorted_trials(state: SweepState) -> list[TrialRecord]:
    sign = -1 if state.objective_mode == "max" else 1
    missing = float("inf")

    def key(record: TrialRecord) -> tuple[int, float]:
        value = record.metrics.get(state.objective_metric)
        rank = {"completed": 0, "running": 1, "pruned": 2, "failed": 3}.get(record.status, 4)
        return rank, sign * value if value is not None else missing

    return sorted(state.trials.values(), key=key)


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

    def refresh(self, state: SweepState, event: str) -> None:
        if self.live is not None:
            self.live.update(trials_table(state), refresh=True)
            return
        record = state.trials.get(event.split()[0])
        metric = state.objective_metric
        value = _fmt(record.metrics.get(metric)) if record else "-"
        self.console.print(
            f"[{state.name}] {event}: {metric}={value}", highlight=False, markup=False
        )


def plain_console() -> Console:
    """A console for stdout; wide when it is not a terminal, so pipes and logs get whole rows."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)


def print_table(state: SweepState, console: Console | None = None) -> None:
    (console or plain_console()).print(trials_table(state))
