"""The verbs on the adapters a sweep made, one typed function each: ``eval``, ``export``,
``promote``, ``compare``, ``judge``, ``errors``, ``human export``, ``human import`` and
``serve``, with the judge settings the flags put on top of a sweep's ``judge:`` section.
``sweeps/cli/main.py`` builds their parsers; none imports torch, ray or mlflow until it runs."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from sweeps.cli.options import (
    CompareOptions,
    ErrorsOptions,
    EvalOptions,
    ExportOptions,
    HumanExportOptions,
    HumanImportOptions,
    JudgeOptions,
    PromoteOptions,
    ServeOptions,
)

if TYPE_CHECKING:
    from sweeps.ab.judge import JudgeSettings
    from sweeps.cli.options import JudgeFlags
    from sweeps.config import JudgeConfig


def evaluate(options: EvalOptions) -> int:
    """Score a model (optionally with a LoRA adapter) on lm-eval benchmarks; log an MLflow run."""
    from sweeps.release.evaluate import evaluate_model

    outcome = evaluate_model(**options.model_dump(exclude={"tasks"}), tasks=list(options.tasks))
    for key, value in sorted(outcome.metrics.items()):
        if not key.endswith("_stderr"):
            print(f"{key}: {value:.4f}")
    print(
        f"MLflow run {outcome.run_id} in {options.mlflow_uri} ({outcome.seconds:.0f} s of scoring)"
    )
    return 0


def export(options: ExportOptions) -> int:
    """Merge an adapter (a directory, SWEEP, SWEEP/TRIAL, run id or registry alias) into its base."""
    from sweeps.release.export import export_merged
    from sweeps.serving.refs import resolve_adapter

    adapter = resolve_adapter(options.ref, **options.store())
    export_merged(adapter, options.merged, base=options.base)
    return 0


def promote(options: PromoteOptions) -> int:
    """Register a sweep's best trial as the registry's champion if it is significantly better."""
    from sweeps.release.promote import promote as promote_trial

    done = promote_trial(
        options.ref,
        state_dir=options.state_dir,
        model_name=options.model_name,
        mlflow_uri=options.mlflow_uri,
        force_reason=options.force,
        require=options.require,
        judge_for=functools.partial(_flagged_judge, options),
    )
    decision = done.decision
    print("\n".join(decision.evidence_lines()))
    for line in decision.refusals:
        print(f"{'overridden' if decision.forced_reason else 'refused'}: {line}")
    if done.version is None:
        print(f"Not promoted: {done.model_name} keeps its champion. --force REASON overrides.")
        return 1
    moved = f"; v{done.previous} is now previous" if done.previous else ""
    print(
        f"Promoted: {done.model_name} v{done.version} is champion{moved}, on the evidence of "
        f"{', '.join(decision.carried_by) or 'nothing (forced)'}."
    )
    print(f"  compare: sweep compare champion {'previous' if done.previous else 'base'}")
    return 0


def compare(options: CompareOptions) -> int:
    """A/B report on two adapters (or one and the base; B is the reference): HTML + Markdown.
    Judge and human evidence stored for the pair is reported too; --judge asks the judge."""
    from sweeps.ab.compare import compare as compare_sides

    settings = _judge_settings(options, [options.a, options.b]) if options.judge else None
    report = compare_sides(
        options.a,
        options.b,
        **options.store(),
        out_dir=options.out,
        samples=options.samples,
        judge=settings,
    )
    d = report.heldout  # A - B: B is the reference
    print(report.headline)
    print(
        f"held-out {report.metric}: A {d.mean_a:.4f}, B {d.mean_b:.4f}, delta (A - B) "
        f"{d.delta:+.4f}, 95% CI [{d.ci_low:+.4f}, {d.ci_high:+.4f}] "
        f"({d.n} rows; A better on {d.a_better}, worse on {d.b_better})"
    )
    print(f"report: {report.html}\nsummary: {report.markdown}\nMLflow run {report.run_id}")
    return 0


def judge(options: JudgeOptions) -> int:
    """An LLM judges the sides' held-out generations pair by pair, each row in both orders (to
    cancel position bias), verdicts cached; prints win/tie/loss with a 95% CI, the sign test and
    the judge's self-agreement (Bradley-Terry strengths for three sides or more), logs every
    verdict's rationale to MLflow, and stores the evidence for the report and promote's gate."""
    from sweeps.ab.judge_pairs import judge_all

    settings = _judge_settings(options, list(options.refs))
    done = judge_all(options.refs, **options.store(), settings=settings)
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

    config = sweep_judge_config(refs, **options.store())
    return _flagged_judge(options, config)


def _flagged_judge(options: JudgeFlags, config: JudgeConfig | None) -> JudgeSettings:
    """A sweep YAML's ``judge:`` section with the --judge-* flags on top."""
    from sweeps.ab.judge import judge_settings

    return judge_settings(config, options.overrides())


def errors(options: ErrorsOptions) -> int:
    """The iterate step: the held-out rows the adapter still gets wrong, grouped by score band,
    input length, label and missed JSON fields, written as errors.jsonl (chat rows that sweep
    data prepare reads: the next round's data) with errors.md and errors.json."""
    from sweeps.ab.error_analysis import find_errors

    report = find_errors(options.ref, **options.store(), out_dir=options.out)
    print("\n".join(report.lines()))
    return 0


def human_export(options: HumanExportOptions) -> int:
    """Write a blind, shuffled pairwise set of A's and B's held-out answers for human raters
    (CSV, JSONL, Label Studio tasks and labelling config, an Argilla script) under OUT/rater/,
    and the key that unblinds it apart, in OUT/key.json."""
    from sweeps.ab.human import export_pairs

    done = export_pairs(options.a, options.b, **options.store(), out_dir=options.out)
    print(
        f"{done.pairs} blind pairs for raters in {done.out_dir / 'rater'} (share this folder "
        f"only; {done.key} unblinds them: keep it apart)"
    )
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

    done = import_ratings(options.directory, **options.store())
    print(f"humans, A = {done.a} against B = {done.b}: {done.summary.describe()}")
    print(f"  {done.ratings} ratings by {len(done.raters)} rater(s), {done.not_rated} left empty")
    for label, agreement in (
        ("between raters", done.rater_agreement),
        ("humans vs the judge", done.judge_agreement),
    ):
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

    served = resolve_served(options.refs, **options.store(), base_model=options.base_model)
    return serve_models(
        served,
        host=options.host,
        port=options.port,
        engine=options.engine,
        api_key_env=options.api_key_env,
        limits=options.limits(),
    )
