"""``sweep``: one typed function per verb. ``--help`` and ``validate`` import no torch, ray or mlflow."""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evals import metric_keys as keys
from sweeps.cli.options import (
    BestOptions,
    CompareOptions,
    DashboardOptions,
    DataPrepareOptions,
    ErrorsOptions,
    EvalOptions,
    ExportOptions,
    HumanExportOptions,
    HumanImportOptions,
    InitOptions,
    JudgeOptions,
    LaunchOptions,
    Options,
    PromoteOptions,
    RerunOptions,
    ResumeOptions,
    ServeOptions,
    StatusOptions,
    UiOptions,
    ValidateOptions,
    add_model_arguments,
    options_from_namespace,
    options_model,
)
from sweeps.config import ConfigError, load_config
from sweeps.tracking.provenance import hide_uri_password
from sweeps.tracking.state import DEFAULT_MLFLOW_URI, DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from rich.console import Console

    from sweeps.ab.judge import JudgeSettings
    from sweeps.cli.options import JudgeFlags
    from sweeps.config import JudgeConfig
    from sweeps.prepare import PrepareResult
    from sweeps.tracking.state import SweepState, TrialRecord

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a pipe's writer


def _input_errors() -> tuple[type[Exception], ...]:
    from evals.benchmarks import BenchmarkError
    from trainers.data import DataError
    from trainers.models import ModelError

    return (ConfigError, DataError, ModelError, BenchmarkError)


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
    print("  (the estimate scales the timed trial by each trial's expected steps and rungs over "
          "the search space, ASHA's expected stops, and the trials run at once)")  # fmt: skip
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
    from sweeps.driver.launch import launch_sweep

    console = plain_console()
    state = launch_sweep(options.config, name=options.name, state_dir=options.state_dir,
                         address=options.address, num_cpus=options.num_cpus,
                         num_gpus=options.num_gpus, console=console)  # fmt: skip
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
    from sweeps.driver.display import plain_console
    from sweeps.driver.launch import resume_sweep

    console = plain_console()
    state = resume_sweep(options.sweep, state_dir=options.state_dir, address=options.address,
                         num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                         console=console)  # fmt: skip
    return print_outcome(state, console)


def rerun(options: RerunOptions) -> int:
    """Run a finished sweep's failed trials again, from scratch, in the same sweep and Optuna
    study: each gets a new study trial with the same hyperparameters and a new MLflow run; the
    failed attempts stay on record (their runs tagged rerun=replaced)."""
    from sweeps.driver.display import plain_console
    from sweeps.driver.launch import rerun_failed

    if not options.failed:
        raise ConfigError("sweep rerun: say what to re-run: --failed (the sweep's failed trials)")
    console = plain_console()
    state = rerun_failed(options.sweep, state_dir=options.state_dir, address=options.address,
                         num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                         console=console)  # fmt: skip
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
    line = (f"cost: {trial_duration(record)} wall time, {hours:.3g} device-hours "
            f"(sweep {state.device_hours():.3g}), "
            f"{int(metrics.get(keys.TOKENS_TRAINED, 0)):,} tokens, "
            f"peak {metrics.get(keys.COST_PEAK_MEMORY_MB, 0.0):,.0f} MB")  # fmt: skip
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
    return (f"restarts from checkpoints: {len(restarts)} ({damaged} passed over a damaged "
            f"checkpoint); faults not retried: {faults}")  # fmt: skip


def describe_disk(state: SweepState) -> str:
    """``disk: 41.2 MB (checkpoints 38.0 MB, adapters 3.1 MB, data 0.0 MB) in DIR``, and what
    removing the checkpoints of ended trials saved."""
    from sweeps.tracking.state import disk_usage

    usage = {k: v / 1e6 for k, v in disk_usage(state.path).items()}
    parts = ", ".join(f"{k} {v:.1f} MB" for k, v in usage.items() if k != "total")
    line = f"disk: {usage['total']:.1f} MB ({parts}) in {state.path}"
    freed = [t.checkpoints_freed for t in state.trials.values() if t.checkpoints_freed]
    if freed:
        line += (f"; {sum(freed) / 1e6:.1f} MB of checkpoints removed as {len(freed)} trials "
                 "ended (recovery.keep_finished_checkpoints: true keeps them)")  # fmt: skip
    return line


def best(options: BestOptions) -> int:
    """Print the best completed trial: its metrics, the base model's, and the adapter path."""
    state = _load_named(options.sweep, state_dir=options.state_dir)
    record = state.best_trial()
    if record is None:
        flagged = [t.trial_id for t in state.trials.values() if t.guard]
        why = f"no eligible trial: the guard flagged {', '.join(flagged)}" if flagged else (
            "no completed trial yet")  # fmt: skip
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


def evaluate(options: EvalOptions) -> int:
    """Score a model (optionally with a LoRA adapter) on lm-eval benchmarks; log an MLflow run."""
    from sweeps.release.evaluate import evaluate_model

    outcome = evaluate_model(**options.model_dump(exclude={"tasks"}), tasks=list(options.tasks))
    for key, value in sorted(outcome.metrics.items()):
        if not key.endswith("_stderr"):
            print(f"{key}: {value:.4f}")
    print(f"MLflow run {outcome.run_id} in {options.mlflow_uri} ({outcome.seconds:.0f} s of "
          "scoring)")  # fmt: skip
    return 0


def export(options: ExportOptions) -> int:
    """Merge an adapter (a directory, SWEEP, SWEEP/TRIAL, run id or registry alias) into its base."""
    from sweeps.release.export import export_merged
    from sweeps.serving.refs import resolve_adapter

    adapter = resolve_adapter(options.ref, state_dir=options.state_dir,
                              mlflow_uri=options.mlflow_uri)  # fmt: skip
    export_merged(adapter, options.merged, base=options.base)
    return 0


def promote(options: PromoteOptions) -> int:
    """Register a sweep's best trial as the registry's champion if it is significantly better."""
    from sweeps.release.promote import promote as promote_trial

    done = promote_trial(options.ref, state_dir=options.state_dir, model_name=options.model_name,
                         mlflow_uri=options.mlflow_uri, force_reason=options.force,
                         require=options.require,
                         judge_for=functools.partial(_flagged_judge, options))  # fmt: skip
    decision = done.decision
    print("\n".join(decision.evidence_lines()))
    for line in decision.refusals:
        print(f"{'overridden' if decision.forced_reason else 'refused'}: {line}")
    if done.version is None:
        print(f"Not promoted: {done.model_name} keeps its champion. --force REASON overrides.")
        return 1
    moved = f"; v{done.previous} is now previous" if done.previous else ""
    print(f"Promoted: {done.model_name} v{done.version} is champion{moved}, on the evidence of "
          f"{', '.join(decision.carried_by) or 'nothing (forced)'}.")  # fmt: skip
    print(f"  compare: sweep compare champion {'previous' if done.previous else 'base'}")
    return 0


def compare(options: CompareOptions) -> int:
    """A/B report on two adapters (or one and the base; B is the reference): HTML + Markdown.
    Judge and human evidence stored for the pair is reported too; --judge asks the judge."""
    from sweeps.ab.compare import compare as compare_sides

    settings = _judge_settings(options, [options.a, options.b]) if options.judge else None
    report = compare_sides(options.a, options.b, state_dir=options.state_dir,
                           mlflow_uri=options.mlflow_uri, out_dir=options.out,
                           samples=options.samples, judge=settings)  # fmt: skip
    d = report.heldout  # A - B: B is the reference
    print(report.headline)
    print(f"held-out {report.metric}: A {d.mean_a:.4f}, B {d.mean_b:.4f}, delta (A - B) "
          f"{d.delta:+.4f}, 95% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}] "
          f"({d.n} rows; A better on {d.a_better}, worse on {d.b_better})")  # fmt: skip
    print(f"report: {report.html}\nsummary: {report.markdown}\nMLflow run {report.run_id}")
    return 0


def judge(options: JudgeOptions) -> int:
    """An LLM judges the sides' held-out generations pair by pair, each row in both orders (to
    cancel position bias), verdicts cached; prints win/tie/loss with a 95% CI, the sign test and
    the judge's self-agreement (Bradley-Terry strengths for three sides or more), logs every
    verdict's rationale to MLflow, and stores the evidence for the report and promote's gate."""
    from sweeps.ab.judge import judge_all

    settings = _judge_settings(options, list(options.refs))
    done = judge_all(options.refs, state_dir=options.state_dir, mlflow_uri=options.mlflow_uri,
                     settings=settings)  # fmt: skip
    for result in done.pairs:
        print("\n".join(result.lines()))
    if done.strengths:
        print("Bradley-Terry strengths (log scale, mean 0; 95% bootstrap CI):")
        for s in done.strengths:
            print(f"  {s.model}: {s.score:+.2f} [{s.low:+.2f}, {s.high:+.2f}] ({s.matches} rows)")
    return 0


def _judge_settings(options: CompareOptions | JudgeOptions, refs: list[str]) -> JudgeSettings:
    """The judge of the sweep the sides come from (its YAML's judge:), with the flags on top."""
    from sweeps.ab.judge import sweep_judge_config

    config = sweep_judge_config(refs, state_dir=options.state_dir, mlflow_uri=options.mlflow_uri)
    return _flagged_judge(options, config)


def _flagged_judge(options: JudgeFlags, config: JudgeConfig | None) -> JudgeSettings:
    """A sweep YAML's ``judge:`` section with the --judge-* flags on top."""
    from sweeps.ab.judge import judge_settings

    return judge_settings(config, url=options.judge_url, model=options.judge_model,
                          key_env=options.judge_key_env, rubric=options.rubric,
                          rows=options.judge_rows)  # fmt: skip


def errors(options: ErrorsOptions) -> int:
    """The iterate step: the held-out rows the adapter still gets wrong, grouped by score band,
    input length, label and missed JSON fields, written as errors.jsonl (chat rows that sweep
    data prepare reads: the next round's data) with errors.md and errors.json."""
    from sweeps.ab.error_analysis import find_errors

    report = find_errors(options.ref, state_dir=options.state_dir, mlflow_uri=options.mlflow_uri,
                         out_dir=options.out)  # fmt: skip
    print("\n".join(report.lines()))
    return 0


def human_export(options: HumanExportOptions) -> int:
    """Write a blind, shuffled pairwise set of A's and B's held-out answers for human raters
    (CSV, JSONL, Label Studio tasks and labelling config, an Argilla script) under OUT/rater/,
    and the key that unblinds it apart, in OUT/key.json."""
    from sweeps.ab.human import export_pairs

    done = export_pairs(options.a, options.b, state_dir=options.state_dir,
                        mlflow_uri=options.mlflow_uri, out_dir=options.out)  # fmt: skip
    print(f"{done.pairs} blind pairs for raters in {done.out_dir / 'rater'} (share this folder "
          f"only; {done.key} unblinds them: keep it apart)")  # fmt: skip
    if done.identical:
        print(f"  {done.identical} pairs have the same answer on both sides (a tie to rate)")
    print(
        f"  then put the ratings in {done.ratings_dir} and run: sweep human import {done.out_dir}"
    )
    return 0


def human_import(options: HumanImportOptions) -> int:
    """Read the ratings back (ratings/: the CSV or JSONL filled in, or a Label Studio JSON
    export), unblind them with key.json, and report A's win rate with a 95% CI; stored as the
    pair's human evidence for the A/B report and promote's gate, and logged to MLflow."""
    from sweeps.ab.human_import import import_ratings

    done = import_ratings(options.directory, state_dir=options.state_dir,
                          mlflow_uri=options.mlflow_uri)  # fmt: skip
    print(f"humans, A = {done.a} against B = {done.b}: {done.summary.describe()}")
    print(f"  {done.ratings} ratings by {len(done.raters)} rater(s), {done.not_rated} left empty")
    for label, agreement in (("between raters", done.rater_agreement),
                             ("humans vs the judge", done.judge_agreement)):  # fmt: skip
        if agreement is not None and agreement.kappa is not None:
            print(f"  Cohen's kappa {label}: {agreement.kappa:.2f} on {agreement.pairs} rows")
    print(f"  MLflow run {done.run_id}; results {done.results}")
    return 0


def serve(options: ServeOptions) -> int:
    """Serve a base model and adapters as an OpenAI-compatible chat endpoint on 127.0.0.1 (each
    REF named NAME=REF, or by itself; base is the model alone). Any openai client can call it,
    and sweep judge can judge through it. Ctrl-C or SIGTERM stops it."""
    from sweeps.serving.serve import resolve_served
    from sweeps.serving.serve import serve as serve_models
    from sweeps.serving.serve_limits import ServeLimits

    served = resolve_served(options.refs, state_dir=options.state_dir,
                            mlflow_uri=options.mlflow_uri, base_model=options.base_model)  # fmt: skip
    limits = ServeLimits(max_tokens=options.max_tokens, context_tokens=options.context_tokens,
                         max_prompt_tokens=options.max_prompt_tokens,
                         request_timeout=options.request_timeout, max_queue=options.max_queue,
                         max_body_mb=options.max_body_mb)  # fmt: skip
    return serve_models(served, host=options.host, port=options.port, engine=options.engine,
                        api_key_env=options.api_key_env, limits=limits)  # fmt: skip


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
    from sweeps.driver.launch import prepare_for_sweep

    loaded = load_config(config)
    if loaded.prepare is None:
        loaded = loaded.model_copy(update={"prepare": PrepareConfig()})
    _, result = prepare_for_sweep(loaded, config_dir=config.resolve().parent, out_dir=out,
                                  progress=print)  # fmt: skip
    prepared: PrepareResult = result  # launch.py leaves prepare_for_sweep's result untyped
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
    from sweeps.tracking.state import load_state, study_storage
    from sweeps.tracking.ui import serve_dashboard

    try:
        state = load_state(options.sweep, state_dir=options.state_dir)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    storage = study_storage(load_config(state.path / RELAUNCH_CONFIG), state.path)
    return serve_dashboard(storage, study=state.name, host=options.host, port=options.port)


def _print_best(state: SweepState, console: Console) -> None:
    from sweeps.driver.display import describe_best, every_row_command, params_words, say

    record = state.best_trial()
    if record is None:
        flagged = any(t.guard for t in state.trials.values())
        say(console, "No eligible trial: the guard flagged every one." if flagged else
            "No trial completed.")  # fmt: skip
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
        say(console, f"already the champion ({champion}); its report: sweep compare champion "
                     f"base{where}{uri}", indent=2, whole=True)  # fmt: skip
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


# --------------------------------------------------------------------------- argument parsing
EXAMPLES = {
    "init": ["sweep init data/reviews.csv --budget 1h",
             "sweep init train.jsonl --heldout eval.jsonl --out search_spaces/mine.yaml"],
    "validate": ["sweep validate search_spaces/lora.yaml",
                 "sweep validate search_spaces/lora.yaml --quick   # the schema only, no torch"],
    "launch": ["sweep launch search_spaces/lora.yaml",
               "sweep launch search_spaces/lora.yaml --name lr-study --num-cpus 2"],
    "resume": ["sweep resume lora-demo-20261129-101500"],
    "rerun": ["sweep rerun lora-demo-20261129-101500 --failed"],
    "status": ["sweep status lora-demo-20261129-101500",
               "sweep status mlruns/sweeps/lora-demo-20261129-101500   # a directory works too"],
    "best": ["sweep best lora-demo-20261129-101500",
             "sweep best lora-demo-20261129-101500 --json | jq .adapter_path"],
    "eval": ["sweep eval smollm2-135m-instruct --tasks arc_easy --limit 50",
             "sweep eval smollm2-135m-instruct --adapter mlruns/sweeps/S/adapters/t1"],
    "export": ["sweep export champion --merged models/notes-to-json"],
    "promote": ["sweep promote lora-demo-20261129-101500",
                "sweep promote lora-demo-20261129-101500/3f2a_00002 --force 'approved by QA'"],
    "compare": ["sweep compare champion base",
                "sweep compare lora-demo-20261129-101500 champion --out reports/new-vs-live"],
    "judge": ["sweep judge champion base --judge-url http://127.0.0.1:8000/v1 --judge-model judge",
              "sweep judge SWEEP/t1 SWEEP/t2 champion   # three sides: Bradley-Terry too"],
    "errors": ["sweep errors champion",
               "sweep errors lora-demo-20261129-101500/3f2a_00002 --out reports/round2"],
    "human": ["sweep human export champion base --out ratings/round1",
              "sweep human import ratings/round1"],
    "export-human": ["sweep human export champion base --out ratings/round1"],
    "import-human": ["sweep human import ratings/round1"],
    "serve": ["sweep serve champion",
              "sweep serve new=SWEEP/t3 live=champion base --port 8001 --api-key-env SERVE_KEY"],
    "prepare": ["sweep data prepare raw/*.jsonl --out data/prepared",
                "sweep data prepare --config search_spaces/lora.yaml --out data/prepared"],
    "data": ["sweep data prepare raw/notes.jsonl --out data/prepared"],
    "ui": ["sweep ui", "sweep ui --port 5050 --mlflow-uri sqlite:///other/mlflow.db"],
    "dashboard": ["sweep dashboard lora-demo-20261129-101500",
                  "sweep dashboard lora-demo-20261129-101500 --port 8081"],
}  # fmt: skip
SUMMARIES = {
    "init": "write a sweep YAML for a data file, sized to a time budget",
    "validate": "dry-run a sweep YAML: every launch check and a time estimate",
    "launch": "run a sweep",
    "resume": "continue a stopped sweep",
    "rerun": "run a finished sweep's failed trials again",
    "status": "a sweep's table of trials",
    "best": "the best trial: metrics, adapter, cost",
    "eval": "score a model or adapter on lm-eval benchmarks",
    "export": "merge an adapter into its base model",
    "promote": "register the best trial as champion if significantly better",
    "compare": "an A/B report on two adapters, or one and the base",
    "judge": "an LLM judges two or more sides' held-out answers, both orders",
    "serve": "serve adapters as an OpenAI-compatible chat endpoint on 127.0.0.1",
    "human": "blind pairwise human ratings: export, then import",
    "errors": "the held-out rows an adapter still gets wrong, as next-round data",
    "export-human": "write a blind pairwise set for raters, and its key apart",
    "import-human": "read the ratings back, unblind them, report the win rate",
    "prepare": "clean, redact, deduplicate, split and decontaminate data",
    "ui": "the MLflow UI on 127.0.0.1, opening on each sweep",
    "dashboard": "optuna-dashboard on a sweep's study, on 127.0.0.1",
}
OVERVIEW = """\
the usual path:
  sweep init data/mine.jsonl               a sweep YAML for your data
  sweep validate search_spaces/mine.yaml   dry run: every check, a time estimate
  sweep launch search_spaces/mine.yaml     run it, logged to MLflow
  sweep status SWEEP                       the table of trials
  sweep ui                                 browse it in the MLflow UI
  sweep promote SWEEP                      register it if significantly better
  sweep compare champion base              an A/B report
  sweep serve champion                     an OpenAI-compatible endpoint
  sweep errors champion                    the rows it still gets wrong
  sweep judge champion base --judge-url URL --judge-model M
                                           an LLM judges the pairs, both orders

'sweep VERB --help' describes a verb, with its defaults and examples."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option's default shown unless its help
    already says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required and action.option_strings:
            return f"{text} (required)"
        if not action.option_strings or "default" in text or action.default in (None,
                                                                                argparse.SUPPRESS):  # fmt: skip
            return text
        shown = action.default
        if isinstance(shown, bool):  # --flag/--no-flag
            shown = action.option_strings[0] if shown else "off"
        elif isinstance(shown, (tuple, list)):  # a comma-separated flag
            shown = ",".join(map(str, shown))
        return f"{text} (default: {shown})"


def _verb(verbs: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
          function: Callable[[Options], int], *, key: str | None = None) -> argparse.ArgumentParser:  # fmt: skip
    """A verb's parser, built from its typed function: the description from its docstring, the
    arguments from the fields of the options model it takes, its examples as the epilog
    (``key``: where its examples and summary are, when another verb has its name)."""
    model = options_model(function)
    key = key or name
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[key])
    parser = verbs.add_parser(name, help=SUMMARIES[key], description=inspect.getdoc(function),
                              epilog=epilog, formatter_class=HelpFormatter)  # fmt: skip
    add_model_arguments(parser, model)
    parser.set_defaults(run=functools.partial(_run_verb, function, model))
    return parser


def _run_verb(function: Callable[[Options], int], model: type[Options],
              namespace: argparse.Namespace) -> int:  # fmt: skip
    return function(options_from_namespace(model, namespace))


def _human_parser(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    human = verbs.add_parser("human", help="blind pairwise human ratings (export, then import)",
                             description="Human A/B evaluation: sweep human export --help, "
                             "sweep human import --help.",
                             epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES["human"]),
                             formatter_class=HelpFormatter)  # fmt: skip
    sub = human.add_subparsers(dest="human_verb", metavar="VERB")
    human.set_defaults(run=lambda a: _print_help(human))
    _verb(sub, "export", human_export, key="export-human")
    _verb(sub, "import", human_import, key="import-human")


def _data_parser(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data = verbs.add_parser("data", help="data preparation (sweep data prepare --help)",
                            description="Data preparation: sweep data prepare --help.",
                            epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES["data"]),
                            formatter_class=HelpFormatter)  # fmt: skip
    sub = data.add_subparsers(dest="data_verb", metavar="VERB")
    data.set_defaults(run=lambda a: _print_help(data))
    _verb(sub, "prepare", data_prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep", formatter_class=HelpFormatter, epilog=OVERVIEW,
        description="Find the best LoRA adapter for your data (Ray Tune + Optuna + MLflow).",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    _verb(verbs, "init", init)
    _verb(verbs, "validate", validate)
    _verb(verbs, "launch", launch)
    _verb(verbs, "resume", resume)
    _verb(verbs, "rerun", rerun)
    _verb(verbs, "status", status)
    _verb(verbs, "best", best)
    _verb(verbs, "eval", evaluate)
    _verb(verbs, "export", export)
    _verb(verbs, "promote", promote)
    _verb(verbs, "compare", compare)
    _verb(verbs, "judge", judge)
    _verb(verbs, "serve", serve)
    _human_parser(verbs)
    _verb(verbs, "errors", errors)
    _data_parser(verbs)
    _verb(verbs, "ui", ui)
    _verb(verbs, "dashboard", dashboard)
    parser.set_defaults(run=lambda a: _print_help(parser))
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    """A bare ``sweep`` (or ``sweep data``): the help, not a usage error."""
    parser.print_help()
    return 0


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lora-sweep")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    for category in (FutureWarning, DeprecationWarning):  # libraries' notes to their developers
        warnings.filterwarnings("ignore", category=category)
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ConfigError as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `sweep status X | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if isinstance(exc, _input_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":
    sys.exit(main())
