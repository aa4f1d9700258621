"""The verbs of a sweep's life, one typed function each: ``init``, ``validate``, ``launch``,
``resume``, ``rerun``, ``status``, ``best``, ``ui``, ``dashboard`` and ``data prepare``, with
what launch, resume, status and best print about a sweep (its best trial, cost, disk, restarts).
``sweeps/cli/main.py`` builds their parsers; none imports torch, ray or mlflow until it runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from evals import metric_keys as keys
from sweeps.cli.options import (
    BestOptions,
    DashboardOptions,
    DataPrepareOptions,
    InitOptions,
    LaunchOptions,
    RerunOptions,
    ResumeOptions,
    StatusOptions,
    UiOptions,
    ValidateOptions,
)
from sweeps.config import ConfigError, load_config
from sweeps.tracking.provenance import hide_uri_password
from sweeps.tracking.state import DEFAULT_MLFLOW_URI, DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from rich.console import Console

    from sweeps.prepare import PrepareResult
    from sweeps.tracking.state import SweepState, TrialRecord


def validate(options: ValidateOptions) -> int:
    """Dry-run a sweep YAML: every check launch runs (data rows, model, target modules,
    truncation, benchmarks, contamination, resources), then the plan: trials, rungs, tokens, and
    the wall time and device-hours estimated from a short timed trial. Starts no Ray, trains no
    adapter, writes no MLflow run. --quick: the YAML's schema only (no torch)."""
    config = options.config
    if options.quick:
        return _validate_schema(config)
    from sweeps.cli.dry_run import dry_run
    from sweeps.search.samplers import describe_search

    load_config(config)  # the schema first: its errors need no model
    done = dry_run(config, num_gpus=options.num_gpus)
    plan = done.plan
    print("Plan:")
    for line in describe_search(plan.config, goals=plan.goals, max_rungs=plan.max_rungs):
        print(f"  {line}")
    for line in done.estimate.lines():
        print(f"  {line}")
    print(
        "  (the estimate scales the timed trial by each trial's expected steps and rungs over "
        "the search space, ASHA's expected stops, and the trials run at once)"
    )
    print(f"{config}: valid; run it: sweep launch {config}")
    return 0


def _validate_schema(config: Path) -> int:
    import yaml

    from sweeps.search.space import describe

    loaded = load_config(config)
    print(
        f"# {config}: valid (schema only; without --quick, every launch check and a time estimate)"
    )
    print(yaml.safe_dump(loaded.model_dump(mode="json"), sort_keys=False).rstrip())
    print("# search space (what Optuna samples per trial):")
    for knob, text in describe(loaded).items():
        print(f"#   {knob}: {text}")
    return 0


def init(options: InitOptions) -> int:
    """Write a commented sweep YAML for a data file: its detected shape and task metric, a name
    from the file, sequence_len from its token lengths, and a search space sized to --budget by
    the estimate sweep validate prints."""
    from sweeps.cli.init import InitRequest, init_sweep

    init_sweep(InitRequest(**options.model_dump()))
    return 0


def launch(options: LaunchOptions) -> int:
    """Run a sweep: preflight, base-model score, Ray Tune trials with a live table, summary."""
    from sweeps.driver.display import plain_console
    from sweeps.driver.launch import launch_with

    console = plain_console()
    state = launch_with(
        options.config, ray=options, name=options.name, state_dir=options.state_dir, console=console
    )
    return print_outcome(state, console)


def print_outcome(state: SweepState, console: Console) -> int:
    """The end of launch and resume: the table, the best trial, disk and restarts; for a sweep
    that did not finish (Ctrl-C), the command that continues it. Exit 0 when it completed."""
    from sweeps.driver.display import print_table, say

    print_table(state, console)
    _print_best(state, console)
    say(console, describe_disk(state))
    say(console, describe_restarts(state.path))
    if state.status != "completed":
        where = _state_dir_option(state)
        say(console, f"Sweep {state.name} is {state.status}: the table above is what finished.")
        say(console, f"continue it: sweep resume {state.name}{where}", indent=2, whole=True)
        return 1
    return 0


def resume(options: ResumeOptions) -> int:
    """Continue a stopped sweep: ended trials stay ended, unfinished ones restart from their last
    checkpoint; the MLflow runs and the Optuna study carry on (running it twice is harmless)."""
    from sweeps.driver.launch import resume_sweep

    return _drive_again(resume_sweep, options)


def rerun(options: RerunOptions) -> int:
    """Run a finished sweep's failed trials again, from scratch, in the same sweep and Optuna
    study: each gets a new study trial with the same hyperparameters and a new MLflow run; the
    failed attempts stay on record (their runs tagged rerun=replaced)."""
    from sweeps.driver.launch import rerun_failed

    if not options.failed:
        raise ConfigError("sweep rerun: say what to re-run: --failed (the sweep's failed trials)")
    return _drive_again(rerun_failed, options)


def _drive_again(drive: Callable[..., SweepState], options: ResumeOptions | RerunOptions) -> int:
    """Drive an existing sweep again (``resume_sweep`` or ``rerun_failed``) on the Ray the
    options name, and print how it ended."""
    from sweeps.driver.display import plain_console

    console = plain_console()
    state = drive(options.sweep, state_dir=options.state_dir, ray=options, console=console)
    return print_outcome(state, console)


def status(options: StatusOptions) -> int:
    """Print a sweep's table of trials (status, params, latest metrics, wall time), fitted to
    the terminal's width or $COLUMNS, with a legend."""
    from sweeps.driver.display import plain_console, print_table, say

    state = _load_named(options.sweep, state_dir=options.state_dir)
    console = plain_console()  # its writes raise BrokenPipeError when the reader left: see main
    print_table(state, console)
    run = f"MLflow parent run {state.parent_run_id} at {hide_uri_password(state.mlflow_uri)}"
    say(console, f"status: {state.status}; {run}")
    best = state.best_trial()
    if best is not None:
        say(console, f"best trial {best.name}: {describe_cost(state, best)}")
    say(console, describe_disk(state))
    say(console, describe_restarts(state.path))
    return 0


def _load_named(sweep: str, *, state_dir: Path) -> SweepState:
    """The sweep named, or one line that lists the sweeps there are (a typo is seen at once)."""
    from sweeps.tracking.state import list_sweeps, load_state

    try:
        return load_state(sweep, state_dir=state_dir)
    except FileNotFoundError as exc:
        known = ", ".join(list_sweeps(state_dir)) or "none"
        raise ConfigError(f"{exc}; sweeps under {state_dir}: {known}") from None


def _state_dir_option(state: SweepState) -> str:
    """`` --state-dir DIR`` for commands about this sweep, unless it lives in the default."""
    state_dir = state.path.parent
    return "" if state_dir == DEFAULT_STATE_DIR.resolve() else f" --state-dir {state_dir}"


def describe_cost(state: SweepState, record: TrialRecord) -> str:
    """``cost: 1m05s wall time, 0.021 device-hours (sweep 0.11), 48,210 tokens, peak 1,240 MB;
    gain per sweep device-hour +1.2``."""
    from sweeps.driver.display import trial_duration

    metrics = record.metrics
    hours = metrics.get(keys.COST_DEVICE_SECONDS, 0.0) / 3600
    line = (
        f"cost: {trial_duration(record)} wall time, {hours:.3g} device-hours "
        f"(sweep {state.device_hours():.3g}), "
        f"{int(metrics.get(keys.TOKENS_TRAINED, 0)):,} tokens, "
        f"peak {metrics.get(keys.COST_PEAK_MEMORY_MB, 0.0):,.0f} MB"
    )
    gain = state.gain_per_device_hour()
    if gain is not None:
        line += f"; {state.objective_metric} gain over the base per sweep device-hour {gain:+.4g}"
    return line


def describe_restarts(directory: Path) -> str:
    """``restarts: 2 (1 passed over a damaged checkpoint); faults not retried: 1``."""
    from sweeps.tracking.state import FAULTS_DIR, restores

    restarts = restores(directory)
    damaged = sum(bool(r["skipped"]) for r in restarts)
    faults = len(list((directory / FAULTS_DIR).glob("*.txt")))
    return (
        f"restarts from checkpoints: {len(restarts)} ({damaged} passed over a damaged "
        f"checkpoint); faults not retried: {faults}"
    )


def describe_disk(state: SweepState) -> str:
    """``disk: 41.2 MB (checkpoints 38.0 MB, adapters 3.1 MB, data 0.0 MB) in DIR``, and what
    removing the checkpoints of ended trials saved."""
    from sweeps.tracking.state import disk_usage

    usage = {k: v / 1e6 for k, v in disk_usage(state.path).items()}
    parts = ", ".join(f"{k} {v:.1f} MB" for k, v in usage.items() if k != "total")
    line = f"disk: {usage['total']:.1f} MB ({parts}) in {state.path}"
    freed = [t.checkpoints_freed for t in state.trials.values() if t.checkpoints_freed]
    if freed:
        line += (
            f"; {sum(freed) / 1e6:.1f} MB of checkpoints removed as {len(freed)} trials "
            "ended (recovery.keep_finished_checkpoints: true keeps them)"
        )
    return line


def best(options: BestOptions) -> int:
    """Print the best completed trial: its metrics, the base model's, and the adapter path."""
    state = _load_named(options.sweep, state_dir=options.state_dir)
    record = state.best_trial()
    if record is None:
        flagged = [t.trial_id for t in state.trials.values() if t.guard]
        why = (
            f"no eligible trial: the guard flagged {', '.join(flagged)}"
            if flagged
            else ("no completed trial yet")
        )
        print(f"sweep {state.name}: {why}", file=sys.stderr)
        return 1
    if options.as_json:
        print(
            json.dumps(
                {
                    "sweep": state.name,
                    "trial_id": record.trial_id,
                    "study_trial": record.number,  # optuna-dashboard's "trial #N"
                    "run_id": record.run_id,
                    "params": record.params,
                    "metrics": record.metrics,
                    "base_metrics": state.base_metrics,
                    "adapter_path": record.adapter_path,
                    "finalist": record.finalist,
                    **(
                        {
                            "objectives": [[g.metric, g.mode] for g in state.goals],
                            "pareto_front": [t.trial_id for t in state.front()],
                            "pick": state.pick,
                        }
                        if state.multi_objective
                        else {}
                    ),
                },
                indent=2,
            )
        )
        sys.stdout.flush()  # a reader that left raises here, where main ends quietly
        return 0
    from sweeps.driver.display import plain_console

    _print_best(state, plain_console())
    return 0


def data_prepare(options: DataPrepareOptions) -> int:
    """Clean, redact PII, deduplicate, check, split and decontaminate data; write a report."""
    from sweeps.prepare import PrepareOptions, prepare_data

    if options.config is not None:
        if options.inputs:
            raise ConfigError("give input files or --config, not both")
        result = _prepare_from_config(options.config, out=options.out_dir)
    elif not options.inputs:
        raise ConfigError("give input files, or --config SWEEP.yaml (its data and prepare:)")
    else:
        result = prepare_data(PrepareOptions(**options.model_dump(exclude={"config"})))
    if not result.heldout:
        print("warning: the held-out set is empty; give --heldout FILE or more rows")
    return 0


def _prepare_from_config(config: Path, *, out: Path) -> PrepareResult:
    """A sweep YAML's data files, prepared with its prepare: section (the defaults without one)."""
    from sweeps.config import PrepareConfig
    from sweeps.driver.set_up import prepare_for_sweep

    loaded = load_config(config)
    if loaded.prepare is None:
        loaded = loaded.model_copy(update={"prepare": PrepareConfig()})
    _, result = prepare_for_sweep(
        loaded, config_dir=config.resolve().parent, out_dir=out, progress=print
    )
    prepared: PrepareResult = result  # set_up.py leaves prepare_for_sweep's result untyped
    return prepared


def ui(options: UiOptions) -> int:
    """Start the MLflow UI on the project's store, on 127.0.0.1 unless --host says otherwise.
    It prints the page of each recent sweep: its trials in the model-training view, sorted by
    the objective, with Optuna's pictures of the study on the sweep's parent run. Ctrl-C or
    SIGTERM stops the UI and its workers."""
    from sweeps.tracking.ui import serve_ui

    return serve_ui(options.mlflow_uri, host=options.host, port=options.port)


def dashboard(options: DashboardOptions) -> int:
    """Start optuna-dashboard on a sweep's Optuna study (its sqlite file, or search.storage's
    PostgreSQL), on 127.0.0.1 unless --host says otherwise: history, importances, intermediate
    values, live while the sweep runs. Ctrl-C or SIGTERM stops it."""
    from sweeps.driver.launch import RELAUNCH_CONFIG
    from sweeps.tracking.state import study_storage
    from sweeps.tracking.ui import serve_dashboard

    state = _load_named(options.sweep, state_dir=options.state_dir)
    storage = study_storage(load_config(state.path / RELAUNCH_CONFIG), state.path)
    return serve_dashboard(storage, study=state.name, host=options.host, port=options.port)


def _print_best(state: SweepState, console: Console) -> None:
    from sweeps.driver.best_trial import describe_best, params_words
    from sweeps.driver.display import every_row_command, say

    record = state.best_trial()
    if record is None:
        flagged = any(t.guard for t in state.trials.values())
        say(
            console,
            "No eligible trial: the guard flagged every one." if flagged else "No trial completed.",
        )
        return
    where = _state_dir_option(state)
    shown = hide_uri_password(state.mlflow_uri)  # a password never reaches the console
    uri = "" if state.mlflow_uri == DEFAULT_MLFLOW_URI else f" --mlflow-uri {shown}"
    for index, line in enumerate(describe_best(state, record)):
        say(console, line, indent=2 if index else 0)
    command = every_row_command(state, record.trial_id)
    if command is not None:
        say(console, f"{command}{where}{uri}", indent=2, whole=True)
    say(console, f"params: {params_words(record.params)}", indent=2)
    say(console, f"adapter: {record.adapter_path}", indent=2)
    say(console, describe_cost(state, record), indent=2)
    say(console, f"MLflow: run {record.run_id} in {shown}", indent=2)
    if state.mlflow_uri.startswith("sqlite:///"):
        say(console, f"browse: sweep ui{uri}", indent=2, whole=True)
    if state.status != "completed":  # continue it first (print_outcome says how)
        return
    champion = _champion_version(state, record.run_id)
    if champion:
        say(
            console,
            f"already the champion ({champion}); its report: sweep compare champion "
            f"base{where}{uri}",
            indent=2,
            whole=True,
        )
    else:
        say(console, f"next: sweep promote {state.name}{where}{uri}", indent=2, whole=True)
        say(console, f"sweep compare {state.name} base{where}{uri}", indent=8, whole=True)


def _champion_version(state: SweepState, run_id: str) -> str:
    """``NAME version V`` when the trial's run is a registered model's champion, else ""."""
    if (
        state.mlflow_uri.startswith("sqlite:///")
        and not Path(state.mlflow_uri.removeprefix("sqlite:///")).is_file()
    ):  # no database yet: nothing registered (and none is created by looking)
        return ""
    from sweeps.tracking.mlflow_facade import ModelRegistry

    found = ModelRegistry(state.mlflow_uri).holding_alias(run_id, "champion")
    return f"{found['name']} version {found['version']}" if found else ""
