"""The trials table fits the console: columns hidden by priority and named, no number cut, a
legend for the marks and for the rows each metric was computed on; a pipe's reader may leave."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sweeps.config import DataConfig, HeldoutEval
from sweeps.driver.display import (
    LiveTable,
    duration,
    fit_table,
    fmt_value,
    legend,
    natural_width,
    plain_console,
    print_table,
)
from sweeps.tracking.state import SweepState, TrialRecord, write_json_atomic
from tests.conftest import REPO
from trainers.spec import TrialSpec

NAME = "notes-20250101-1200"
LR = 0.0019420829011663684
TOKENS = 123_456_789.0


def record(trial_id: str, status: str, params: tuple[float, int, int, int, int], *,
           f1: float | None, loss: float | None, wall: float | None, rungs: int,
           **extra: Any) -> TrialRecord:  # fmt: skip
    lr, r, alpha, epochs, seq = params
    metrics = {"heldout/field_f1": f1, "heldout/loss": loss, "cost/wall_seconds": wall,
               "cost/device_seconds": wall and wall * 4, "tokens_trained": TOKENS,
               "cost/peak_memory_mb": 12_400.5, "train/loss": loss and loss * 0.9}  # fmt: skip
    return TrialRecord(trial_id, f"run-{trial_id}", {"learning_rate": lr, "lora_r": r,
                       "lora_alpha": alpha, "num_epochs": epochs, "sequence_len": seq},
                       status=status, rungs=rungs,
                       metrics={k: v for k, v in metrics.items() if v is not None}, **extra)  # fmt: skip


def sweep_state(state_dir: Path, *, generation_samples: int | None = 16, extra: int = 0,
                spec: bool = True) -> SweepState:  # fmt: skip
    """A finished-looking sweep on disk, no training: each status, a finalist, a guard flag."""
    directory = state_dir / NAME
    state = SweepState(name=NAME, directory=str(directory), config_path="sweep.yaml",
                       objective_metric="heldout/field_f1", objective_mode="max",
                       task_metric="field_f1", mlflow_uri=f"sqlite:///{state_dir}/mlflow.db",
                       parent_run_id="9f1c2d3e4b5a69788796a5b4c3d2e1f0", status="completed",
                       base_metrics={"heldout/field_f1": 0.41234567, "heldout/loss": 2.3456789})  # fmt: skip
    trials = [
        record("3f2a1_00000", "completed", (LR, 16, 32, 3, 2048), f1=0.7321987, loss=0.98765432,
               wall=3905.2, rungs=4, finalist=True, final_objective=0.7412),
        record("3f2a1_00001", "completed", (0.00012345678901234, 64, 128, 2, 1024), f1=0.80012345,
               loss=0.9123456, wall=65.4, rungs=4, finalist=True, guard=["mmlu: drop 0.1"]),
        record("3f2a1_00002", "pruned", (3.3e-05, 8, 16, 1, 512), f1=0.2123, loss=1.734, wall=42.0,
               rungs=1),
        record("3f2a1_00003", "running", (0.000871, 32, 64, 3, 4096), f1=0.5012, loss=1.2012,
               wall=612.9, rungs=2),
        record("3f2a1_00004", "failed", (0.00456, 4, 8, 1, 256), f1=None, loss=None, wall=None,
               rungs=0, error="CUDA out of memory"),
        *(record(f"4b7c9_{i:05d}", "pruned", (1e-4 + i * 1e-7, 8, 16, 1, 512), f1=0.1 + i / 1e5,
                 loss=2.0, wall=30.0 + i, rungs=1) for i in range(extra)),
    ]  # fmt: skip
    state.trials = {t.trial_id: t for t in trials}
    state.save()
    if spec:
        spec_record = TrialSpec(
            model_path="base", data=DataConfig(train="train.jsonl", task_metric="field_f1"),
            evaluation=HeldoutEval(generation_samples=generation_samples),
        ).record()  # fmt: skip
        write_json_atomic(state.spec_path, spec_record)
    return state


def run_status(state_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "sweeps.cli.main",
        "status",
        NAME,
        "--state-dir",
        str(state_dir),
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**env, "PYTHONPATH": str(REPO)})  # fmt: skip


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def expected_cells(trial: TrialRecord) -> set[str]:
    """Every cell of a trial's row, whole, as the table formats it."""
    params = {fmt_value(v) for v in trial.params.values()}
    metrics = {fmt_value(trial.metrics.get(k)) for k in ("heldout/field_f1", "heldout/loss")}
    hours = trial.metrics.get("cost/device_seconds")
    return {trial.trial_id, "*", trial.status, "final", "guard", str(trial.rungs), "-",
            duration(trial.metrics.get("cost/wall_seconds")), *params, *metrics,
            *([f"{hours / 3600:.3g}"] if hours is not None else [])}  # fmt: skip


def test_status_at_80_columns_shows_every_number_whole(tmp_path: Path) -> None:
    state = sweep_state(tmp_path)
    done = run_status(tmp_path, {**base_env(), "COLUMNS": "80"})  # stdout is a pipe
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "…" not in out
    for line in out.splitlines():  # only a path or URI longer than the width overruns it
        assert len(line) <= 80 or " " not in line.strip(), line
    for trial in state.trials.values():
        row = next(line for line in out.splitlines() if line.startswith(trial.trial_id))
        cells = row.split()
        assert set(cells) <= expected_cells(trial), (row, expected_cells(trial))
        shown = (trial.metrics.get("heldout/field_f1"), trial.metrics.get("heldout/loss"),
                 trial.params["learning_rate"])  # fmt: skip
        assert all(fmt_value(value) in cells for value in shown), row
        assert duration(trial.metrics.get("cost/wall_seconds")) in cells, row
    best = next(line for line in out.splitlines() if line.startswith("3f2a1_00000"))
    assert best.split()[:5] == ["3f2a1_00000", "*", "completed", "final", "0.00194"]
    assert best.split()[-3:] == ["0.7322", "0.9877", "1h05m"]
    guarded = next(line for line in out.splitlines() if line.startswith("3f2a1_00001"))
    assert "guard" in guarded.split() and "1m05s" in guarded.split()
    assert "hidden at 80 columns: seq_len, alpha, epochs, dev-h, r;" in " ".join(out.split())
    assert "123,456,789" in out.split()  # the best trial's tokens, in its cost line


def test_best_at_80_columns_labels_the_sample_and_keeps_numbers_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeps.cli.main import main

    sweep_state(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["best", NAME, "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    words = out.split()
    assert "123,456,789" in words and "…" not in out
    flat = " ".join(words)
    assert "params: learning_rate 0.00194, lora_alpha 32, lora_r 16," in flat  # as written
    assert "0.0019420829011663684" not in out and "{" not in flat
    assert f"next: sweep promote {NAME}" in flat  # not promoted yet (no registry at all)
    assert "heldout/field_f1=0.7322 (base model 0.4123, delta +0.3199)" in flat
    assert "field_f1: generated on the first 16 held-out rows at each rung" in flat
    assert "finalist: objective 0.7412 with the full benchmark sets' deltas" in flat
    assert "cost: 1h05m wall time," in flat
    command = next(line for line in out.splitlines() if "on every held-out row:" in line)
    assert f"sweep compare {NAME}/3f2a1_00000 base --state-dir {tmp_path}" in command
    for line in out.splitlines():
        assert len(line) <= 80 or "sweep " in line or " " not in line.strip(), line
    # a mistyped name: the sweeps there are, in the one line (dashboard starts no server)
    for verb in ("best", "status", "dashboard"):
        assert main([verb, NAME + "x", "--state-dir", str(tmp_path)]) == 2, verb
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and err.endswith(f"sweeps under {tmp_path}: {NAME}"), err


def test_each_event_line_names_the_trial_and_its_objective(tmp_path: Path) -> None:
    """Without a terminal (CI logs, pipes) each event is a line: the trial as every view names
    it, what happened, and its objective so far."""
    state = sweep_state(tmp_path)
    first = next(iter(state.trials.values()))
    first.number = 3
    out = io.StringIO()
    with LiveTable(Console(file=out, width=120)) as live:
        live.refresh(state, first, f"rung {first.rungs}")
    value = fmt_value(first.metrics["heldout/field_f1"])
    assert out.getvalue() == (f"[{NAME}] #3 {first.trial_id} rung {first.rungs}: "
                              f"heldout/field_f1={value}\n")  # fmt: skip


def test_a_command_in_the_legend_is_never_split_across_lines() -> None:
    from sweeps.driver.display import wrapped_note

    note = "field_f1 on every held-out row: sweep compare notes-to-json-20261206-101500/TRIAL base"
    lines = wrapped_note(note, 80)
    assert lines == ["field_f1 on every held-out row:",
                     "sweep compare notes-to-json-20261206-101500/TRIAL base"]  # fmt: skip
    assert wrapped_note("a: sweep b", 80) == ["a: sweep b"]  # it fits: one line


@pytest.mark.parametrize("extra", [0, 1500])  # 1500 rows: more than a pipe holds, so it breaks
def test_status_piped_into_head_exits_quietly(tmp_path: Path, extra: int) -> None:
    sweep_state(tmp_path, extra=extra)
    status = shlex.join([sys.executable, "-m", "sweeps.cli.main", "status", NAME,
                         "--state-dir", str(tmp_path)])  # fmt: skip
    script = f'{status} | head -1; echo "writer exit ${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**base_env(), "PYTHONPATH": str(REPO)})  # fmt: skip
    for said in ("Traceback", "BrokenPipe", "Exception ignored"):
        assert said not in done.stderr, done.stderr
    assert done.stderr == ""
    first, exit_line = done.stdout.splitlines()
    assert first.strip() == f"sweep {NAME}"
    allowed = {"writer exit 141"} if extra else {"writer exit 0", "writer exit 141"}
    assert exit_line in allowed


def fitted_hidden(state: SweepState, width: int) -> tuple[list[str], str]:
    console = Console(width=width, file=io.StringIO(), record=True)
    fitted = fit_table(state, console)
    assert natural_width(fitted.table, console) <= width
    print_table(state, console)
    return [c.header.split("\n")[0] for c in fitted.hidden], console.export_text()


@pytest.mark.parametrize(
    ("width", "hidden"),
    [(200, []), (100, ["seq_len", "alpha"]), (80, ["seq_len", "alpha", "epochs", "dev-h", "r"])],
)
def test_columns_are_hidden_lowest_priority_first(
    tmp_path: Path, width: int, hidden: list[str]
) -> None:
    state = sweep_state(tmp_path)
    names, text = fitted_hidden(state, width)
    assert names == hidden
    assert all(len(line) <= width for line in text.splitlines()), text
    header = " ".join(text.split("─")[0].split())
    for name in ("trial", "status", "field_f1", "16 rows", "loss", "all rows", "time", "lr"):
        assert name in header
    assert not any(f" {name} " in f" {header} " for name in hidden)
    note = f"(hidden at {width} columns: {', '.join(hidden)};"
    assert (note in " ".join(text.split())) == bool(hidden)


def test_a_very_narrow_console_keeps_trial_and_objective_and_cuts_nothing(tmp_path: Path) -> None:
    state = sweep_state(tmp_path)
    console = Console(width=16, file=io.StringIO(), record=True)
    assert [c.key for c in fit_table(state, console).shown] == ["trial", "heldout/field_f1"]
    print_table(state, console)
    text = console.export_text()
    assert "…" not in text and "0.7322" in text.split()  # cells fold onto lines, never cut
    assert all(len(line) <= 16 for line in text.splitlines()[:20])


def test_the_legend_says_what_marks_and_rows_mean(tmp_path: Path) -> None:
    state = sweep_state(tmp_path)
    shown = fit_table(state, Console(width=200, file=io.StringIO())).shown
    lines = legend(state, shown)
    assert lines[0] == "* best eligible trial (a finalist, not flagged by the guard)"
    assert any(
        line.startswith("final = a finalist, re-scored on the full benchmark") for line in lines
    )
    assert any(line.startswith("guard = regressed on a benchmark") for line in lines)
    assert ("field_f1: generated on the first 16 held-out rows at each rung (all of them, if "
            "fewer); loss: on every held-out row") in lines  # fmt: skip
    assert lines[-1] == f"field_f1 on every held-out row: sweep compare {NAME}/TRIAL base"


@pytest.mark.parametrize(("samples", "spec", "header", "words"), [
    (None, True, "all rows", "field_f1: generated on every held-out row at each rung"),
    (16, False, "sample", "field_f1: on the held-out rows generated at each rung"),
])  # fmt: skip
def test_the_rows_a_metric_was_computed_on(
    tmp_path: Path, samples: int | None, spec: bool, header: str, words: str
) -> None:
    state = sweep_state(tmp_path, generation_samples=samples, spec=spec)
    _, text = fitted_hidden(state, 200)
    assert header in text.split("─")[0] and words in " ".join(text.split())
    assert ("sweep compare" in text) is (not spec)  # every row already, or unknown


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (0.2, "0s"), (59.4, "59s"), (65.4, "1m05s"), (3599.6, "1h00m"),
    (3905.2, "1h05m"), (400_000.0, "111h06m"),
])  # fmt: skip
def test_duration(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


def test_plain_console_honours_columns_even_through_a_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert plain_console().width == 200  # pytest's stdout is no terminal
    monkeypatch.setenv("COLUMNS", "80")
    assert plain_console().width == 80


def test_best_shows_the_spread_over_trials_and_the_gain_over_the_median_trial(
    tmp_path: Path,
) -> None:
    """Completed and pruned trials count (a pruned one at the rung it stopped); a running or
    failed one does not. Values: 0.2123, 0.7322, 0.8001 and, with extra=2, 0.1 and 0.10001."""
    import statistics

    from sweeps.driver.best_trial import describe_spread

    state = sweep_state(tmp_path, extra=2)
    best = state.trials["3f2a1_00000"]
    values = [0.1, 0.10001, 0.2123, 0.7321987, 0.80012345]
    line = describe_spread(state, best)
    assert line is not None
    quarter = statistics.quantiles(values, n=4, method="inclusive")[0]
    gain = 0.7321987 - statistics.median(values)
    assert line == (f"spread over 5 trials: worst quarter {quarter:.4f}, median 0.2123, best "
                    f"0.7322; the search gained {gain:+.4f} over the median trial")  # fmt: skip
    state.trials = {k: v for k, v in state.trials.items() if k in ("3f2a1_00000", "3f2a1_00003")}
    assert describe_spread(state, best) is None  # one finished trial: no spread to show


def test_best_states_what_each_benchmark_delta_could_show(tmp_path: Path) -> None:
    """`sweep best` (and the summary, the same lines) give every benchmark delta with its
    documents and the drop they can detect, or "too few documents"; a base at chance is said;
    a guard left unresolved is said with its reason."""
    from sweeps.driver.best_trial import describe_best

    state = sweep_state(tmp_path)
    best = state.best_trial()
    assert best is not None
    best.metrics |= {
        "bench/proxy/hellaswag/acc_norm": 0.40, "bench/proxy/hellaswag/acc_norm_stderr": 0.05,
        "bench/proxy/hellaswag/delta": -0.02, "bench/proxy/hellaswag/documents": 92,
        "bench/proxy/hellaswag/detectable_drop": 0.141,
        "bench/proxy/arc_challenge/acc_norm": 0.25, "bench/proxy/arc_challenge/acc_norm_stderr": 0.15,
        "bench/proxy/arc_challenge/delta": 0.0, "bench/proxy/arc_challenge/documents": 8,
    }  # fmt: skip
    best.guard_open = ["hellaswag: not cleared: -0.0200 vs base on 92 documents (proxy), ..."]
    lines = describe_best(state, best)
    assert (
        "benchmark hellaswag: delta -0.0200 vs the base model on 92 documents (proxy); they "
        "detect a drop of 14.1 points or more (80% power, alpha 0.05, paired)"
    ) in lines
    assert (
        "benchmark arc_challenge: delta +0.0000 vs the base model on 8 documents (proxy); too "
        "few documents to detect a regression"
    ) in lines
    assert any(line.startswith("arc_challenge: the base model's 0.2500 is within noise of chance")
               for line in lines)  # fmt: skip
    assert not any(line.startswith("hellaswag: the base model") for line in lines)
    assert "guard: hellaswag: not cleared: -0.0200 vs base on 92 documents (proxy), ..." in lines
    assert not any(line.endswith("no benchmark regression") for line in lines)
