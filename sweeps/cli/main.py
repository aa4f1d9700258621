"""``sweep``: the parser, built from one typed function per verb (``verbs_sweep.py``,
``verbs_adapters.py``), and how a verb's error ends the command (its exit status).
``--help`` and ``validate`` import no torch, ray or mlflow."""

from __future__ import annotations

import argparse
import functools
import inspect
import sys
from collections.abc import Callable, Sequence

from sweeps.cli.arguments import Options, add_model_arguments, options_from_namespace, options_model
from sweeps.cli.verbs_adapters import (
    compare,
    errors,
    evaluate,
    export,
    human_export,
    human_import,
    judge,
    promote,
    serve,
)
from sweeps.cli.verbs_sweep import (
    best,
    dashboard,
    data_prepare,
    init,
    launch,
    rerun,
    resume,
    status,
    ui,
    validate,
)
from sweeps.config import ConfigError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a pipe's writer


def _input_errors() -> tuple[type[Exception], ...]:
    from evals.benchmark_sources import BenchmarkError
    from trainers.data_readers import DataError
    from trainers.models import ModelError

    return (ConfigError, DataError, ModelError, BenchmarkError)


# --------------------------------------------------------------------------- argument parsing
# A table, left as laid out: a verb's examples on its own row.
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
        if (
            not action.option_strings
            or "default" in text
            or action.default in (None, argparse.SUPPRESS)
        ):
            return text
        shown = action.default
        if isinstance(shown, bool):  # --flag/--no-flag
            shown = action.option_strings[0] if shown else "off"
        elif isinstance(shown, (tuple, list)):  # a comma-separated flag
            shown = ",".join(map(str, shown))
        return f"{text} (default: {shown})"


def _verb(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    function: Callable[[Options], int],
    *,
    key: str | None = None,
) -> argparse.ArgumentParser:
    """A verb's parser, built from its typed function: the description from its docstring, the
    arguments from the fields of the options model it takes, its examples as the epilog
    (``key``: where its examples and summary are, when another verb has its name)."""
    model = options_model(function)
    key = key or name
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[key])
    parser = verbs.add_parser(
        name,
        help=SUMMARIES[key],
        description=inspect.getdoc(function),
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    add_model_arguments(parser, model)
    parser.set_defaults(run=functools.partial(_run_verb, function, model))
    return parser


def _run_verb(
    function: Callable[[Options], int], model: type[Options], namespace: argparse.Namespace
) -> int:
    return function(options_from_namespace(model, namespace))


def _group(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str,
    subverbs: Sequence[tuple[str, Callable[..., int], str]],
) -> None:
    """A verb with verbs of its own (``sweep human export``): bare, it prints its help."""
    group = verbs.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[name]),
        formatter_class=HelpFormatter,
    )
    sub = group.add_subparsers(dest=f"{name}_verb", metavar="VERB")
    group.set_defaults(run=lambda a: _print_help(group))
    for subverb, function, key in subverbs:
        _verb(sub, subverb, function, key=key)


# The verbs up to serve, in the order `sweep --help` lists them (human, errors, data, ui and
# dashboard follow in build_parser).
VERBS: tuple[tuple[str, Callable[..., int]], ...] = (
    ("init", init),
    ("validate", validate),
    ("launch", launch),
    ("resume", resume),
    ("rerun", rerun),
    ("status", status),
    ("best", best),
    ("eval", evaluate),
    ("export", export),
    ("promote", promote),
    ("compare", compare),
    ("judge", judge),
    ("serve", serve),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep",
        formatter_class=HelpFormatter,
        epilog=OVERVIEW,
        description="Find the best LoRA adapter for your data (Ray Tune + Optuna + MLflow).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, function in VERBS:
        _verb(verbs, name, function)
    _group(
        verbs,
        "human",
        summary="blind pairwise human ratings (export, then import)",
        description="Human A/B evaluation: sweep human export --help, sweep human import --help.",
        subverbs=[
            ("export", human_export, "export-human"),
            ("import", human_import, "import-human"),
        ],
    )
    _verb(verbs, "errors", errors)
    _group(
        verbs,
        "data",
        summary="data preparation (sweep data prepare --help)",
        description="Data preparation: sweep data prepare --help.",
        subverbs=[("prepare", data_prepare, "prepare")],
    )
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
