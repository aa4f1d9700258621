"""``sweep``: one typed function per verb. ``--help`` and ``validate`` import no torch, ray or mlflow."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sweeps.config import ConfigError, load_config
from sweeps.provenance import hide_uri_password

SHAPE_CHOICES = ("alpaca", "dolly", "instruction_response", "question_answer", "prompt_completion",
                 "prompt_response", "input_output", "text_label", "hash_pairs", "text", "chat")  # fmt: skip
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a pipe's writer
DEFAULT_STATE_DIR = Path("mlruns/sweeps")
DEFAULT_MLFLOW_URI = "sqlite:///mlruns/mlflow.db"


def _input_errors() -> tuple[type[Exception], ...]:
    from evals.benchmarks import BenchmarkError
    from trainers.data import DataError
    from trainers.models import ModelError

    return (ConfigError, DataError, ModelError, BenchmarkError)


def validate(config: Path, *, quick: bool = False, num_gpus: int | None = None) -> int:
    """Dry-run a sweep YAML: every check launch runs (data rows, model, target modules,
    truncation, benchmarks, contamination, resources), then the plan: trials, rungs, tokens, and
    the wall time and device-hours estimated from a short timed trial. Starts no Ray, trains no
    adapter, writes no MLflow run. --quick: the YAML's schema only (no torch)."""
    if quick:
        return _validate_schema(config)
    from sweeps.dry_run import dry_run

    load_config(config)  # the schema first: its errors need no model
    done = dry_run(config, num_gpus=num_gpus)
    print("Plan:")
    for line in done.estimate.lines():
        print(f"  {line}")
    print("  (the estimate scales the timed trial by each trial's expected steps and rungs over "
          "the search space, ASHA's expected stops, and the trials run at once)")  # fmt: skip
    print(f"{config}: valid; run it: sweep launch {config}")
    return 0


def _validate_schema(config: Path) -> int:
    import yaml

    from sweeps.space import describe

    loaded = load_config(config)
    print(
        f"# {config}: valid (schema only; without --quick, every launch check and a time estimate)"
    )
    print(yaml.safe_dump(loaded.model_dump(mode="json"), sort_keys=False).rstrip())
    print("# search space (what Optuna samples per trial):")
    for knob, text in describe(loaded).items():
        print(f"#   {knob}: {text}")
    return 0


def init(data: Path, *, heldout: Path | None = None, model: str = "smollm2-135m-instruct",
         budget: str = "30m", out: Path | None = None, name: str | None = None,
         instruction: str | None = None, system_prompt: str | None = None) -> int:  # fmt: skip
    """Write a commented sweep YAML for a data file: its detected shape and task metric, a name
    from the file, sequence_len from its token lengths, and a search space sized to --budget by
    the estimate sweep validate prints."""
    from sweeps.init import InitRequest, init_sweep

    init_sweep(InitRequest(data=data, heldout=heldout, model=model, budget=budget, out=out,
                           name=name, instruction=instruction, system_prompt=system_prompt))  # fmt: skip
    return 0


def launch(
    config: Path,
    *,
    name: str | None = None,
    state_dir: Path | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
) -> int:
    """Run a sweep: preflight, base-model score, Ray Tune trials with a live table, summary."""
    from sweeps.display import plain_console
    from sweeps.launch import launch_sweep

    console = plain_console()
    state = launch_sweep(config, name=name, state_dir=state_dir, address=address,
                         num_cpus=num_cpus, num_gpus=num_gpus, console=console)  # fmt: skip
    return print_outcome(state, console)


def print_outcome(state: Any, console: Any) -> int:
    """The end of launch and resume: the table, the best trial, disk and restarts; for a sweep
    that did not finish (Ctrl-C), the command that continues it. Exit 0 when it completed."""
    from sweeps.display import print_table, say

    print_table(state, console)
    _print_best(state, console)
    say(console, describe_disk(state.path))
    say(console, describe_restarts(state.path))
    if state.status != "completed":
        where = _state_dir_option(state)
        say(console, f"Sweep {state.name} is {state.status}: the table above is what finished.")
        say(console, f"continue it: sweep resume {state.name}{where}", indent=2, whole=True)
        return 1
    return 0


def resume(sweep: str, *, state_dir: Path = DEFAULT_STATE_DIR, address: str | None = None,
           num_cpus: int | None = None, num_gpus: int | None = None) -> int:  # fmt: skip
    """Continue a stopped sweep: ended trials stay ended, unfinished ones restart from their last
    checkpoint; the MLflow runs and the Optuna study carry on (running it twice is harmless)."""
    from sweeps.display import plain_console
    from sweeps.launch import resume_sweep

    console = plain_console()
    state = resume_sweep(sweep, state_dir=state_dir, address=address, num_cpus=num_cpus,
                         num_gpus=num_gpus, console=console)  # fmt: skip
    return print_outcome(state, console)


def status(sweep: str, *, state_dir: Path = DEFAULT_STATE_DIR) -> int:
    """Print a sweep's table of trials (status, params, latest metrics, wall time), fitted to
    the terminal's width or $COLUMNS, with a legend."""
    from sweeps.display import plain_console, print_table, say
    from sweeps.state import list_sweeps, load_state

    try:
        state = load_state(sweep, state_dir=state_dir)
    except FileNotFoundError as exc:
        known = ", ".join(list_sweeps(state_dir)) or "none"
        raise ConfigError(f"{exc}; sweeps under {state_dir}: {known}") from None
    console = plain_console()  # its writes raise BrokenPipeError when the reader left: see main
    print_table(state, console)
    run = f"MLflow parent run {state.parent_run_id} at {hide_uri_password(state.mlflow_uri)}"
    say(console, f"status: {state.status}; {run}")
    best = state.best_trial()
    if best is not None:
        say(console, f"best trial {best.trial_id}: {describe_cost(state, best)}")
    say(console, describe_disk(state.path))
    say(console, describe_restarts(state.path))
    return 0


def _state_dir_option(state: Any) -> str:
    """`` --state-dir DIR`` for commands about this sweep, unless it lives in the default."""
    state_dir = state.path.parent
    return "" if state_dir == DEFAULT_STATE_DIR.resolve() else f" --state-dir {state_dir}"


def describe_cost(state: Any, record: Any) -> str:
    """``cost: 1m05s wall time, 0.021 device-hours (sweep 0.11), 48,210 tokens, peak 1,240 MB;
    gain per sweep device-hour +1.2``."""
    from sweeps.display import trial_duration

    metrics = record.metrics
    hours = metrics.get("cost/device_seconds", 0.0) / 3600
    line = (f"cost: {trial_duration(record)} wall time, {hours:.3g} device-hours "
            f"(sweep {state.device_hours():.3g}), "
            f"{int(metrics.get('tokens_trained', 0)):,} tokens, "
            f"peak {metrics.get('cost/peak_memory_mb', 0.0):,.0f} MB")  # fmt: skip
    gain = state.gain_per_device_hour()
    if gain is not None:
        line += f"; {state.objective_metric} gain over the base per sweep device-hour {gain:+.4g}"
    return line


def describe_restarts(directory: Path) -> str:
    """``restarts: 2 (1 passed over a damaged checkpoint); faults not retried: 1``."""
    from sweeps.state import FAULTS_DIR, restores

    restarts = restores(directory)
    damaged = sum(bool(r["skipped"]) for r in restarts)
    faults = len(list((directory / FAULTS_DIR).glob("*.txt")))
    return (f"restarts from checkpoints: {len(restarts)} ({damaged} passed over a damaged "
            f"checkpoint); faults not retried: {faults}")  # fmt: skip


def describe_disk(directory: Path) -> str:
    """``disk: 41.2 MB (checkpoints 38.0 MB, adapters 3.1 MB, data 0.0 MB)``."""
    from sweeps.state import disk_usage

    usage = {k: v / 1e6 for k, v in disk_usage(directory).items()}
    parts = ", ".join(f"{k} {v:.1f} MB" for k, v in usage.items() if k != "total")
    return f"disk: {usage['total']:.1f} MB ({parts}) in {directory}"


def best(sweep: str, *, state_dir: Path = DEFAULT_STATE_DIR, as_json: bool = False) -> int:
    """Print the best completed trial: its metrics, the base model's, and the adapter path."""
    from sweeps.state import load_state

    try:
        state = load_state(sweep, state_dir=state_dir)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    record = state.best_trial()
    if record is None:
        flagged = [t.trial_id for t in state.trials.values() if t.guard]
        why = f"no eligible trial: the guard flagged {', '.join(flagged)}" if flagged else (
            "no completed trial yet")  # fmt: skip
        print(f"sweep {state.name}: {why}", file=sys.stderr)
        return 1
    if as_json:
        print(
            json.dumps(
                {
                    "sweep": state.name,
                    "trial_id": record.trial_id,
                    "run_id": record.run_id,
                    "params": record.params,
                    "metrics": record.metrics,
                    "base_metrics": state.base_metrics,
                    "adapter_path": record.adapter_path,
                    "finalist": record.finalist,
                },
                indent=2,
            )
        )
        sys.stdout.flush()  # a reader that left raises here, where main ends quietly
        return 0
    from sweeps.display import plain_console

    _print_best(state, plain_console())
    return 0


def evaluate(
    model: str, *, adapter: Path | None = None, tasks: list[str], mirror: str | None = None,
    limit: int | None = None, num_fewshot: int | None = None, batch_size: int = 16,
    mlflow_uri: str = DEFAULT_MLFLOW_URI, experiment: str = "lora-sweep-evals",
) -> int:  # fmt: skip
    """Score a model (optionally with a LoRA adapter) on lm-eval benchmarks; log an MLflow run."""
    from sweeps.evaluate import evaluate_model

    outcome = evaluate_model(model, adapter=adapter, tasks=tasks, mirror=mirror, limit=limit,
                             num_fewshot=num_fewshot, batch_size=batch_size,
                             mlflow_uri=mlflow_uri, experiment=experiment)  # fmt: skip
    for key, value in sorted(outcome.metrics.items()):
        if not key.endswith("_stderr"):
            print(f"{key}: {value:.4f}")
    print(f"MLflow run {outcome.run_id} in {mlflow_uri} ({outcome.seconds:.0f} s of scoring)")
    return 0


def export(ref: str, *, merged: Path, base: str | None = None,
           state_dir: Path = DEFAULT_STATE_DIR, mlflow_uri: str = DEFAULT_MLFLOW_URI) -> int:  # fmt: skip
    """Merge an adapter (a directory, SWEEP, SWEEP/TRIAL, run id or registry alias) into its base."""
    from sweeps.export import export_merged
    from sweeps.refs import resolve_adapter

    adapter = resolve_adapter(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
    export_merged(adapter, merged, base=base)
    return 0


def promote(ref: str, *, model_name: str | None = None, force: str | None = None,
            state_dir: Path = DEFAULT_STATE_DIR, mlflow_uri: str | None = None) -> int:  # fmt: skip
    """Register a sweep's best trial as the registry's champion if it is significantly better."""
    from sweeps.promote import promote as promote_trial

    done = promote_trial(ref, state_dir=state_dir, model_name=model_name, mlflow_uri=mlflow_uri,
                         force_reason=force)  # fmt: skip
    decision = done.decision
    print(decision.evidence())
    for line in decision.refusals:
        print(f"{'overridden' if decision.forced_reason else 'refused'}: {line}")
    if done.version is None:
        print(f"Not promoted: {done.model_name} keeps its champion. --force REASON overrides.")
        return 1
    moved = f"; v{done.previous} is now previous" if done.previous else ""
    print(f"Promoted: {done.model_name} v{done.version} is champion{moved}.")
    print(f"  compare: sweep compare champion {'previous' if done.previous else 'base'}")
    return 0


def compare(a: str, b: str, *, out: Path | None = None, samples: int = 8,
            state_dir: Path = DEFAULT_STATE_DIR, mlflow_uri: str = DEFAULT_MLFLOW_URI) -> int:  # fmt: skip
    """A/B report on two adapters (or one and the base; B is the reference): HTML + Markdown."""
    from sweeps.compare import compare as compare_sides

    report = compare_sides(a, b, state_dir=state_dir, mlflow_uri=mlflow_uri, out_dir=out,
                           samples=samples)  # fmt: skip
    d = report.heldout  # A - B: B is the reference
    print(report.headline)
    print(f"held-out {report.metric}: A {d.mean_a:.4f}, B {d.mean_b:.4f}, delta (A - B) "
          f"{d.delta:+.4f}, 95% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}] "
          f"({d.n} rows; A better on {d.a_better}, worse on {d.b_better})")  # fmt: skip
    print(f"report: {report.html}\nsummary: {report.markdown}\nMLflow run {report.run_id}")
    return 0


def data_prepare(inputs: list[Path], *, out: Path, options: dict[str, Any],
                 config: Path | None = None) -> int:  # fmt: skip
    """Clean, redact PII, deduplicate, check, split and decontaminate data; write a report."""
    from sweeps.prepare import PrepareOptions, prepare_data

    if config is not None:
        if inputs:
            raise ConfigError("give input files or --config, not both")
        result = _prepare_from_config(config, out=out)
    elif not inputs:
        raise ConfigError("give input files, or --config SWEEP.yaml (its data and prepare:)")
    else:
        result = prepare_data(PrepareOptions(inputs=tuple(inputs), out_dir=out, **options))
    if not result.heldout:
        print("warning: the held-out set is empty; give --heldout FILE or more rows")
    return 0


def _prepare_from_config(config: Path, *, out: Path) -> Any:
    """A sweep YAML's data files, prepared with its prepare: section (the defaults without one)."""
    from sweeps.config import PrepareConfig
    from sweeps.launch import prepare_for_sweep

    loaded = load_config(config)
    if loaded.prepare is None:
        loaded = loaded.model_copy(update={"prepare": PrepareConfig()})
    _, result = prepare_for_sweep(loaded, config_dir=config.resolve().parent, out_dir=out,
                                  progress=print)  # fmt: skip
    return result


def _prepare_options(a: argparse.Namespace) -> dict[str, Any]:
    from trainers.data import parse_columns

    columns = parse_columns(a.columns) if a.columns else {}
    return {
        "fmt": a.format, "columns": columns, "label_field": a.label_field, "heldout": a.heldout,
        "instruction": a.instruction,
        "clean": a.clean, "speaker_tags": a.speaker_tags, "fillers": a.fillers,
        "redact": a.redact, "dedup": a.dedup, "near_dedup": a.near_dedup,
        "near_threshold": a.near_threshold, "decontaminate": a.decontaminate,
        "benchmarks": tuple(t for t in a.benchmarks.split(",") if t), "mirror": a.mirror,
        "quality": a.quality, "min_response_chars": a.min_response_chars,
        "max_seq_len": a.max_seq_len, "model": a.model, "drop_flagged": not a.keep_flagged,
        "heldout_fraction": a.heldout_fraction, "seed": a.seed,
    }  # fmt: skip


def _data_parser(verbs: Any) -> None:
    data = verbs.add_parser("data", help="data preparation (sweep data prepare --help)",
                            description="Data preparation: sweep data prepare --help.",
                            epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES["data"]),
                            formatter_class=HelpFormatter)  # fmt: skip
    sub = data.add_subparsers(dest="data_verb", metavar="VERB")
    data.set_defaults(run=lambda a: _print_help(data))
    p = _verb(sub, "prepare", data_prepare)
    p.add_argument("inputs", type=Path, nargs="*", help="jsonl, json, csv, parquet or txt files")
    p.add_argument("--config", type=Path, help="a sweep YAML: its data files, with its prepare: "
                   "section (the step flags below are for files given directly; default: give files)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="new directory for the prepared data")
    p.add_argument("--format", default="auto", choices=["auto", *SHAPE_CHOICES], metavar="SHAPE",
                   help="the rows' shape (default: auto, detected from the first row's keys): "
                   + ", ".join(SHAPE_CHOICES))  # fmt: skip
    p.add_argument(
        "--columns",
        metavar="NAME=COLUMN,...",
        help="map your columns to ours, e.g. instruction=question,output=answer (default: "
        "the shape's own names, matched case-insensitively)",
    )
    p.add_argument("--label-field", metavar="COLUMN", help="your label column: for text rows the "
                   "label is the response; for any shape it stratifies the split (default: a column "
                   "named label, sentiment, category, ...)")  # fmt: skip
    p.add_argument("--instruction", help="text+label rows: the instruction the label answers "
                   "(default: 'What is the <label column> of this text?')")  # fmt: skip
    p.add_argument("--heldout", type=Path, help="your own held-out file (default: split off "
                   "the inputs, --heldout-fraction of them)")  # fmt: skip
    p.add_argument("--heldout-fraction", type=float, default=0.1,
                   help="the share of rows split off as the held-out set")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the split's random seed")
    for step, text in (("clean", "Unicode NFC, control characters, whitespace"),
                       ("redact", "emails, phones, cards, IPs (names with presidio)"),
                       ("dedup", "exact and near duplicates"),
                       ("near-dedup", "MinHash near duplicates"),
                       ("decontaminate", "13-gram overlap with held-out and benchmarks"),
                       ("quality", "short/empty responses, echoes, too long")):  # fmt: skip
        p.add_argument(f"--{step}", action=argparse.BooleanOptionalAction, default=True, help=text)
    p.add_argument("--speaker-tags", action="store_true", help="normalise 'SPEAKER_1:' tags")
    p.add_argument("--fillers", action="store_true", help="remove um/uh/erm fillers")
    p.add_argument("--near-threshold", type=float, default=0.8, help="MinHash Jaccard")
    p.add_argument("--benchmarks", default="", help="comma-separated lm-eval tasks to "
                   "decontaminate against (default: none)")  # fmt: skip
    p.add_argument("--mirror", type=Path, help="benchmark mirror, jsonl files (default: "
                   "$LORA_SWEEP_BENCHMARK_MIRROR)")  # fmt: skip
    p.add_argument("--min-response-chars", type=int, metavar="N",
                   help="flag responses shorter than N characters (default: from the data; none "
                   "when answers are short: labels, numbers, letters)")  # fmt: skip
    p.add_argument("--max-seq-len", type=int, help="flag rows longer than this many tokens "
                   "(default: no length check)")  # fmt: skip
    p.add_argument("--model", help="whose tokenizer measures --max-seq-len (default: "
                   "smollm2-135m-instruct)")  # fmt: skip
    p.add_argument("--keep-flagged", action="store_true", help="report quality problems only "
                   "(default: flagged rows are dropped, and counted)")  # fmt: skip
    p.set_defaults(run=lambda a: data_prepare(a.inputs, out=a.out, options=_prepare_options(a),
                                              config=a.config))  # fmt: skip


def ui(*, mlflow_uri: str = DEFAULT_MLFLOW_URI, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Start the MLflow UI on the project's store, on 127.0.0.1 unless --host says otherwise.
    It prints the page of each recent sweep: its trials in the model-training view, sorted by
    the objective, with Optuna's pictures of the study on the sweep's parent run. Ctrl-C or
    SIGTERM stops the UI and its workers."""
    from sweeps.ui import serve_ui

    return serve_ui(mlflow_uri, host=host, port=port)


def dashboard(sweep: str, *, state_dir: Path = DEFAULT_STATE_DIR, host: str = "127.0.0.1",
              port: int = 8080) -> int:  # fmt: skip
    """Start optuna-dashboard on a sweep's Optuna study (its sqlite file, or search.storage's
    PostgreSQL), on 127.0.0.1 unless --host says otherwise: history, importances, intermediate
    values, live while the sweep runs. Ctrl-C or SIGTERM stops it."""
    from sweeps.launch import RELAUNCH_CONFIG
    from sweeps.state import load_state, study_storage
    from sweeps.ui import serve_dashboard

    try:
        state = load_state(sweep, state_dir=state_dir)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    storage = study_storage(load_config(state.path / RELAUNCH_CONFIG), state.path)
    return serve_dashboard(storage, study=state.name, host=host, port=port)


def _print_best(state: Any, console: Any) -> None:
    from sweeps.display import describe_best, every_row_command, say

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
    say(console, f"params: {json.dumps(record.params)}", indent=2)
    say(console, f"adapter: {record.adapter_path}", indent=2)
    say(console, describe_cost(state, record), indent=2)
    say(console, f"MLflow: run {record.run_id} in {shown}", indent=2)
    if state.mlflow_uri.startswith("sqlite:///"):
        say(console, f"browse: sweep ui{uri}", indent=2, whole=True)
    if state.status == "completed":  # else: continue it first (print_outcome says how)
        say(console, f"next: sweep promote {state.name}{where}{uri}", indent=2, whole=True)
        say(console, f"sweep compare {state.name} base{where}{uri}", indent=8, whole=True)


# --------------------------------------------------------------------------- argument parsing
EXAMPLES = {
    "init": ["sweep init data/reviews.csv --budget 1h",
             "sweep init train.jsonl --heldout eval.jsonl --out search_spaces/mine.yaml"],
    "validate": ["sweep validate search_spaces/lora.yaml",
                 "sweep validate search_spaces/lora.yaml --quick   # the schema only, no torch"],
    "launch": ["sweep launch search_spaces/lora.yaml",
               "sweep launch search_spaces/lora.yaml --name lr-study --num-cpus 2"],
    "resume": ["sweep resume lora-demo-20261129-101500"],
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
    "status": "a sweep's table of trials",
    "best": "the best trial: metrics, adapter, cost",
    "eval": "score a model or adapter on lm-eval benchmarks",
    "export": "merge an adapter into its base model",
    "promote": "register the best trial as champion if significantly better",
    "compare": "an A/B report on two adapters, or one and the base",
    "prepare": "clean, redact, deduplicate, split and decontaminate data",
    "ui": "the MLflow UI on 127.0.0.1, opening on each sweep",
    "dashboard": "optuna-dashboard on a sweep's study, on 127.0.0.1",
}
OVERVIEW = """\
the usual path:
  sweep init data/mine.jsonl           write a sweep YAML for your data
  sweep validate search_spaces/mine.yaml   dry run: every check, and a time estimate
  sweep launch search_spaces/mine.yaml     run it (Ray Tune + Optuna + ASHA, logged to MLflow)
  sweep status SWEEP                   the table of trials
  sweep ui                             browse it in the MLflow UI
  sweep promote SWEEP                  register the best adapter if it is significantly better
  sweep compare champion base          an A/B report

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
            shown = f"--{action.dest.replace('_', '-')}" if shown else "off"
        return f"{text} (default: {shown})"


def _verb(verbs: Any, name: str, function: Callable[..., int], *, help: str | None = None) -> Any:
    """A verb's parser: its description from the function, its examples as the epilog."""
    description = inspect.getdoc(function) or ""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
    return verbs.add_parser(name, help=help or SUMMARIES[name],
                            description=description, epilog=epilog,
                            formatter_class=HelpFormatter)  # fmt: skip


def _state_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help="where sweep directories live")  # fmt: skip


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="the sweep's name (launch prints it), or its directory")
    _state_dir_argument(p)


def _store_arguments(p: argparse.ArgumentParser, *, tracking: str = "the tracking store") -> None:
    _state_dir_argument(p)
    p.add_argument("--mlflow-uri", default=DEFAULT_MLFLOW_URI, help=tracking)


def _ray_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="an existing Ray cluster: auto, or ray://host:port "
                   "(default: start a local Ray)")  # fmt: skip
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    p.add_argument("--num-gpus", type=int, help="GPUs for a local Ray (default: those CUDA "
                   "sees); without CUDA, logical GPUs that Ray packs trials on, training on CPU")  # fmt: skip


def _add_run_verbs(verbs: Any) -> None:
    p = _verb(verbs, "init", init)
    p.add_argument("data", type=Path, help="your training data: jsonl, json, csv, parquet or txt")
    p.add_argument("--heldout", type=Path, help="your held-out file (default: split off DATA)")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="base model: an HF id, a local directory, or smollm2-135m-instruct")  # fmt: skip
    p.add_argument("--budget", default="30m", help="wall time to size the sweep to, e.g. 30m, 2h")
    p.add_argument("--out", type=Path, help="the YAML to write (default: search_spaces/NAME.yaml)")
    p.add_argument("--name", help="sweep and experiment name (default: from the data file)")
    p.add_argument("--instruction", help="text+label rows: the instruction the label answers "
                   "(default: 'What is the <label column> of this text?')")  # fmt: skip
    p.add_argument("--system-prompt", help="a system prompt for every example (default: none)")
    p.set_defaults(run=lambda a: init(a.data, heldout=a.heldout, model=a.model, budget=a.budget,
                                      out=a.out, name=a.name, instruction=a.instruction,
                                      system_prompt=a.system_prompt))  # fmt: skip

    p = _verb(verbs, "validate", validate)
    p.add_argument("config", type=Path, help="sweep YAML, e.g. search_spaces/lora.yaml")
    p.add_argument("--quick", action="store_true", help="the schema only: no data, model or "
                   "timing (imports no torch; default: the full dry run)")  # fmt: skip
    p.add_argument("--num-gpus", type=int, help="as for launch: logical GPUs for a local Ray "
                   "(default: those CUDA sees)")  # fmt: skip
    p.set_defaults(run=lambda a: validate(a.config, quick=a.quick, num_gpus=a.num_gpus))

    p = _verb(verbs, "launch", launch)
    p.add_argument("config", type=Path, help="sweep YAML, e.g. search_spaces/lora.yaml")
    p.add_argument("--name", help="sweep name (default: <config name>-<timestamp>)")
    p.add_argument("--state-dir", type=Path, help="where sweep directories live (default: the "
                   f"YAML's tracking.state_dir, else {DEFAULT_STATE_DIR})")  # fmt: skip
    _ray_arguments(p)
    p.set_defaults(run=lambda a: launch(a.config, name=a.name, state_dir=a.state_dir,
                                        address=a.address, num_cpus=a.num_cpus,
                                        num_gpus=a.num_gpus))  # fmt: skip

    p = _verb(verbs, "resume", resume)
    _sweep_arguments(p)
    _ray_arguments(p)
    p.set_defaults(run=lambda a: resume(a.sweep, state_dir=a.state_dir, address=a.address,
                                        num_cpus=a.num_cpus, num_gpus=a.num_gpus))  # fmt: skip

    p = _verb(verbs, "status", status)
    _sweep_arguments(p)
    p.set_defaults(run=lambda a: status(a.sweep, state_dir=a.state_dir))

    p = _verb(verbs, "best", best)
    _sweep_arguments(p)
    p.add_argument("--json", action="store_true", dest="as_json",
                   help="machine-readable output (default: text)")  # fmt: skip
    p.set_defaults(run=lambda a: best(a.sweep, state_dir=a.state_dir, as_json=a.as_json))


def _add_model_verbs(verbs: Any) -> None:
    refs = ("base, champion, NAME@ALIAS, models:/NAME/VERSION, SWEEP (its best trial), "
            "SWEEP/TRIAL, a run id, or an adapter directory")  # fmt: skip
    p = _verb(verbs, "eval", evaluate)
    p.add_argument("model", help="an HF id, a local directory, or smollm2-135m-instruct")
    p.add_argument("--adapter", type=Path, help="a PEFT adapter directory to apply (default: "
                   "none, the base model)")  # fmt: skip
    p.add_argument("--tasks", default="arc_challenge,hellaswag,mmlu,truthfulqa_mc2",
                   help="comma-separated lm-eval task names (any lm-eval task works)")  # fmt: skip
    p.add_argument("--mirror", help="local benchmark mirror (default: "
                   "$LORA_SWEEP_BENCHMARK_MIRROR, else the Hugging Face Hub)")  # fmt: skip
    p.add_argument("--limit", type=int, help="documents per task, a proxy (default: full sets)")
    p.add_argument("--num-fewshot", type=int, help="few-shot examples (default: each task's own)")
    p.add_argument("--batch-size", type=int, default=16, help="pinned: scores shift with it")
    p.add_argument("--mlflow-uri", default=DEFAULT_MLFLOW_URI, help="the tracking store")
    p.add_argument("--experiment", default="lora-sweep-evals", help="the MLflow experiment")
    p.set_defaults(run=lambda a: evaluate(
        a.model, adapter=a.adapter, tasks=[t for t in a.tasks.split(",") if t], mirror=a.mirror,
        limit=a.limit, num_fewshot=a.num_fewshot, batch_size=a.batch_size,
        mlflow_uri=a.mlflow_uri, experiment=a.experiment))  # fmt: skip

    p = _verb(verbs, "export", export)
    p.add_argument("ref", help=f"the adapter: {refs.removeprefix('base, ')}")
    p.add_argument("--merged", type=Path, required=True, help="new directory for the merged model")
    p.add_argument("--base", help="base model (default: the one the adapter records)")
    _store_arguments(p, tracking="the registry, for champion and NAME@ALIAS")
    p.set_defaults(run=lambda a: export(a.ref, merged=a.merged, base=a.base,
                                        state_dir=a.state_dir, mlflow_uri=a.mlflow_uri))  # fmt: skip

    p = _verb(verbs, "promote", promote)
    p.add_argument("ref", help="SWEEP (its best trial), SWEEP/TRIAL, or a trial's run id")
    p.add_argument("--model-name", help="registered model (default: the sweep config's name)")
    p.add_argument("--force", metavar="REASON", help="promote even if the gate refuses; the "
                   "reason is recorded as a tag (default: the gate decides)")  # fmt: skip
    _state_dir_argument(p)
    p.add_argument("--mlflow-uri", help="the registry (default: the sweep's tracking store)")
    p.set_defaults(run=lambda a: promote(a.ref, model_name=a.model_name, force=a.force,
                                         state_dir=a.state_dir, mlflow_uri=a.mlflow_uri))  # fmt: skip

    p = _verb(verbs, "compare", compare)
    p.add_argument("a", help=f"the candidate: {refs}")
    p.add_argument("b", help="the reference, as for A (e.g. base or champion)")
    p.add_argument("--out", type=Path, help="report directory (default: reports/A-vs-B)")
    p.add_argument("--samples", type=int, default=8, help="generations shown side by side")
    _store_arguments(p)
    p.set_defaults(run=lambda a: compare(a.a, a.b, out=a.out, samples=a.samples,
                                         state_dir=a.state_dir, mlflow_uri=a.mlflow_uri))  # fmt: skip


def _add_server_verbs(verbs: Any) -> None:
    p = _verb(verbs, "ui", ui)
    p.add_argument("--mlflow-uri", default=DEFAULT_MLFLOW_URI, help="the tracking store")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=int, default=5000, help="the port to listen on")
    p.set_defaults(run=lambda a: ui(mlflow_uri=a.mlflow_uri, host=a.host, port=a.port))

    p = _verb(verbs, "dashboard", dashboard)
    _sweep_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=int, default=8080, help="the port to listen on")
    p.set_defaults(run=lambda a: dashboard(a.sweep, state_dir=a.state_dir, host=a.host,
                                           port=a.port))  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep", formatter_class=HelpFormatter, epilog=OVERVIEW,
        description="Find the best LoRA adapter for your data (Ray Tune + Optuna + MLflow).",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    _add_run_verbs(verbs)
    _add_model_verbs(verbs)
    _data_parser(verbs)
    _add_server_verbs(verbs)
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
