"""The driver's benchmark steps: base-model proxy scores before the sweep, finalists after it.

Before: the base model is scored on the proxy documents (cached across sweeps) so every trial's
delta is read against the same documents. After: the top ``finalists`` trials by the objective
are re-scored on the full sets, next to the base model's full-set scores (cached too), and the
no-regression guard flags any trial that lost more than its margin on a guarded benchmark.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from evals.benchmark_plan import (
    BenchmarkPlan,
    base_with,
    cached_base_scores,
    phase_metrics,
    primary_scores,
    write_samples,
)
from evals.benchmark_scores import BenchmarkScores
from evals.metric_keys import (
    BASE,
    COMPOSITE_FULL,
    DELTA,
    DOCUMENTS,
    FULL,
    PROXY,
    bench_metrics,
    bench_name,
    with_group,
)
from evals.objective import REGRESSED, UNRESOLVED, guard_checks
from evals.scoring_dtype import scored_in, scoring_dtype
from evals.sequential import Looked, finalist_looks, score_in_looks
from sweeps.console import Say
from trainers.spec import TrialSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from sweeps.tracking.mlflow_facade import SweepTracker
    from sweeps.tracking.state import SweepState, TrialRecord


class BaseModel:
    """The base model and tokenizer, loaded on first use and then kept."""

    def __init__(self, spec: TrialSpec) -> None:
        self.spec = spec
        self._loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None

    def __call__(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self._loaded is None:
            from trainers.models import load_causal_lm, load_tokenizer

            path = Path(self.spec.model_path)
            remote = self.spec.trust_remote_code
            model = load_causal_lm(path, trust_remote_code=remote, device=self.spec.device)
            self._loaded = (model.eval(), load_tokenizer(path, trust_remote_code=remote))
        return self._loaded


def model_id(spec: TrialSpec) -> str:
    from trainers.models import model_identity

    return model_identity(Path(spec.model_path))


def score_base_proxy(spec: TrialSpec, *, say: Say) -> tuple[BenchmarkPlan, BenchmarkScores]:
    """The plan with the base model's proxy scores filled in, and those scores (cached)."""
    plan = _plan(spec)
    scores = cached_base_scores(
        plan, phase=PROXY, model_id=model_id(spec), load=BaseModel(spec), progress=say
    )
    return base_with(plan, scores, phase=PROXY), scores


def log_base_scores(
    tracker: SweepTracker, run_id: str, scores: BenchmarkScores, *, phase: str
) -> None:
    """``base/bench/<phase>/...`` metrics and the base's per-sample outputs on the parent run."""
    metrics = with_group(BASE, bench_metrics(phase, scores.metrics))
    tracker.log_metrics_once(run_id, metrics, step=0)
    log_samples(tracker, run_id, scores, artifact_path=f"base_benchmarks/{phase}")


def log_samples(
    tracker: SweepTracker, run_id: str, scores: BenchmarkScores, *, artifact_path: str
) -> None:
    """Per-sample outputs and the eval config, as artefacts under ``artifact_path``."""
    with tempfile.TemporaryDirectory() as tmp:
        write_samples(scores, Path(tmp))
        tracker.log_artifact_dirs(run_id, {artifact_path: Path(tmp)})


# --------------------------------------------------------------------------- after the sweep
def guard_and_score_finalists(
    state: SweepState, tracker: SweepTracker, *, spec: TrialSpec, say: Say
) -> None:
    """The guard on every completed trial's logged deltas (the proxy's, or a past finalist's
    full sets'), then full sets for the finalists, judged again on them; tags each run."""
    plan = spec.benchmarks
    if plan is None:
        return
    completed = [t for t in state.trials.values() if t.status == "completed"]
    for record in completed:
        apply_guard(record, plan.guard)
    finalists = [t for t in state.ranked_trials() if t.adapter_path][: plan.finalists]
    if finalists:
        score_finalists(state, tracker, finalists, spec=spec, say=say)
    for record in completed:
        tracker.set_tags(record.run_id, guard_tags(record, guarded=bool(plan.guard)))
        if record.guard:
            say(f"Guard: trial {record.trial_id} excluded from best: {'; '.join(record.guard)}")
        elif record.guard_open:
            say(f"Guard: trial {record.trial_id} not called clean: {'; '.join(record.guard_open)}")
    state.save()


def apply_guard(record: TrialRecord, margins: dict[str, float]) -> None:
    """The guard's verdicts from the trial's logged deltas: what it regressed on, and what it
    could not be cleared on (documents too few to show a drop of the margin's size)."""
    checks = guard_checks(record.metrics, margins)
    record.guard = [c.line for c in checks if c.verdict == REGRESSED]
    record.guard_open = [c.line for c in checks if c.verdict == UNRESOLVED]


def guard_tags(record: TrialRecord, *, guarded: bool) -> dict[str, str]:
    """``guard``: failed (excluded from best) | unresolved (not cleared: too few documents) |
    passed | none (no guard); ``guard.reason``: the lines behind a verdict other than passed."""
    verdict = (
        "failed"
        if record.guard
        else "unresolved"
        if record.guard_open
        else "passed"
        if guarded
        else "none"
    )
    tags = {"guard": verdict, "finalist": str(record.finalist).lower()}
    if record.guard or record.guard_open:
        tags["guard.reason"] = "; ".join(record.guard or record.guard_open)
    return tags


def score_finalists(
    state: SweepState,
    tracker: SweepTracker,
    finalists: list[TrialRecord],
    *,
    spec: TrialSpec,
    say: Say,
) -> None:
    """Base and finalists on the full sets, one base model load for all of them."""
    from peft import PeftModel

    plan = _plan(spec)
    base_model = BaseModel(spec)
    base = cached_base_scores(
        plan, phase=FULL, model_id=model_id(spec), load=base_model, progress=say
    )
    log_base_scores(tracker, state.parent_run_id, base, phase=FULL)
    plan = base_with(plan, base, phase=FULL)
    model, tokenizer = base_model()
    for record in finalists:
        say(
            f"Finalist {record.trial_id}: scoring {', '.join(plan.tasks)} in looks of up to "
            f"{finalist_size(plan, base)} documents a task ..."
        )
        assert record.adapter_path is not None
        tuned = PeftModel.from_pretrained(model, record.adapter_path).eval()
        started, scores = time.perf_counter(), BenchmarkScores(metrics={})
        looked: list[Looked] = []
        with scored_in(tuned, scoring_dtype(tuned, plan.dtype)) as scored:  # cast once
            for task in plan.tasks:
                looks = finalist_looks(len(plan.base_items[FULL].get(task, {})))
                part, how = score_in_looks(
                    scored, tokenizer, plan, task=task, looks=looks, margin=plan.guard.get(task)
                )
                scores, looked = scores.merge(part), [*looked, how]
        model = tuned.unload()  # the base again, for the next finalist
        seconds = time.perf_counter() - started
        full = record_full_scores(state, tracker, record, scores, plan=plan, seconds=seconds)
        say(describe_scores(record.trial_id, full, record.metrics))
        say(f"Finalist {record.trial_id} documents: " + "; ".join(h.describe() for h in looked))


def record_full_scores(
    state: SweepState,
    tracker: SweepTracker,
    record: TrialRecord,
    scores: BenchmarkScores,
    *,
    plan: BenchmarkPlan,
    seconds: float,
) -> dict[str, float]:
    """Log a finalist's full-set scores and judge it; returns its primary score per task."""
    heldout = record.metrics.get(plan.heldout_metric)
    metrics = phase_metrics(scores, plan, phase=FULL, heldout=heldout, seconds=seconds)
    tracker.log_metrics_once(record.run_id, metrics, step=max(record.last_step, 0))
    log_samples(tracker, record.run_id, scores, artifact_path=f"benchmarks/{FULL}")
    record.metrics.update(metrics)
    record.finalist = True
    record.final_objective = metrics.get(COMPOSITE_FULL)
    apply_guard(record, plan.guard)  # now on the finalist's documents
    state.save()
    return primary_scores(scores, plan)


def finalist_size(plan: BenchmarkPlan, base: BenchmarkScores) -> int:
    """The most documents a finalist is scored on for one task (the base's count)."""
    counts = [
        sum(len(base.samples.get(leaf, [])) for leaf in base.members(task)) for task in plan.tasks
    ]
    return max(counts, default=0)


def describe_scores(trial_id: str, scores: dict[str, float], metrics: dict[str, float]) -> str:
    """``Finalist t1 (finalist tier): mmlu 0.2650 (base 0.2600, +0.0050 on 100 documents)``:
    the base's score on the same documents (the delta is the paired one, logged beside)."""
    parts = []
    for task, value in scores.items():
        delta = metrics.get(bench_name(FULL, task, DELTA))
        if delta is None:
            continue
        documents = metrics.get(bench_name(FULL, task, DOCUMENTS))
        on = f" on {documents:.0f} documents" if documents else ""
        parts.append(f"{task} {value:.4f} (base {value - delta:.4f}, {delta:+.4f}{on})")
    return f"Finalist {trial_id} (finalist tier): " + ", ".join(parts)


def _plan(spec: TrialSpec) -> BenchmarkPlan:
    """The sweep's benchmark plan: only called for a sweep that has one."""
    if spec.benchmarks is None:
        raise ValueError("the trial spec has no benchmark plan")
    return spec.benchmarks
