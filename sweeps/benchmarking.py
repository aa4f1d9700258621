"""The driver's benchmark steps: base-model proxy scores before the sweep, finalists after it.

Before: the base model is scored on the proxy documents (cached across sweeps) so every trial's
delta is read against the same documents. After: the top ``finalists`` trials by the objective
are re-scored on the full sets, next to the base model's full-set scores (cached too), and the
no-regression guard flags any trial that lost more than its margin on a guarded benchmark.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.benchmark_plan import (
    COMPOSITE,
    FULL,
    PROXY,
    BenchmarkPlan,
    base_with,
    cached_base_scores,
    phase_metrics,
    primary_scores,
    recorded_scores,
    score_plan,
    significant_losses,
    write_samples,
)
from evals.objective import guard_violations

if TYPE_CHECKING:
    from sweeps._tracking import SweepTracker
    from sweeps.state import SweepState, TrialRecord

Say = Callable[[str], None]


class BaseModel:
    """The base model and tokenizer, loaded on first use and then kept."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._loaded: tuple[Any, Any] | None = None

    def __call__(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from trainers.models import load_causal_lm, load_tokenizer

            path = Path(self.spec.model_path)
            remote = self.spec.trust_remote_code
            model = load_causal_lm(path, trust_remote_code=remote, device=self.spec.device)
            self._loaded = (model.eval(), load_tokenizer(path, trust_remote_code=remote))
        return self._loaded


def model_id(spec: Any) -> str:
    from trainers.models import model_identity

    return model_identity(Path(spec.model_path))


def score_base_proxy(spec: Any, *, say: Say) -> tuple[BenchmarkPlan, Any]:
    """The plan with the base model's proxy scores filled in, and those scores (cached)."""
    plan: BenchmarkPlan = spec.benchmarks
    scores = cached_base_scores(
        plan, phase=PROXY, model_id=model_id(spec), load=BaseModel(spec), progress=say
    )
    return base_with(plan, scores, phase=PROXY), scores


def log_base_scores(tracker: SweepTracker, run_id: str, scores: Any, *, phase: str) -> None:
    """``base/bench/<phase>/...`` metrics and the base's per-sample outputs on the parent run."""
    tracker.log_metrics_once(run_id, {f"base/{k}": v for k, v in scores.flat(f"bench/{phase}").items()},
                             step=0)  # fmt: skip
    log_samples(tracker, run_id, scores, artifact_path=f"base_benchmarks/{phase}")


def log_samples(tracker: SweepTracker, run_id: str, scores: Any, *, artifact_path: str) -> None:
    """Per-sample outputs and the eval config, as artefacts under ``artifact_path``."""
    with tempfile.TemporaryDirectory() as tmp:
        write_samples(scores, Path(tmp))
        tracker.log_artifact_dirs(run_id, {artifact_path: Path(tmp)})


# --------------------------------------------------------------------------- after the sweep
def judge_trials(state: SweepState, tracker: SweepTracker, *, spec: Any, say: Say) -> None:
    """Proxy guard for every completed trial, then full sets for the finalists; tags each run."""
    plan: BenchmarkPlan | None = spec.benchmarks
    if plan is None:
        return
    completed = [t for t in state.trials.values() if t.status == "completed"]
    for record in completed:  # on the proxy, only a loss that is more than chance counts
        scores = recorded_scores(record.metrics, plan, phase=PROXY)
        evidence = significant_losses(record.metrics, plan, phase=PROXY)
        record.guard = guard_violations(
            scores, plan.base.get(PROXY, {}), plan.guard, significant=evidence
        )
    finalists = [t for t in state.ranked_trials() if t.adapter_path][: plan.finalists]
    if finalists:
        score_finalists(state, tracker, finalists, spec=spec, say=say)
    for record in completed:
        verdict = "failed" if record.guard else "passed"
        tags = {"guard": verdict, "finalist": str(record.finalist).lower()}
        if record.guard:
            tags["guard.reason"] = "; ".join(record.guard)
            say(f"Guard: trial {record.trial_id} excluded from best: {'; '.join(record.guard)}")
        tracker.set_tags(record.run_id, tags)
    state.save()


def score_finalists(
    state: SweepState, tracker: SweepTracker, finalists: list[TrialRecord], *, spec: Any,
    say: Say,
) -> None:  # fmt: skip
    """Base and finalists on the full sets, one base model load for all of them."""
    from peft import PeftModel

    plan: BenchmarkPlan = spec.benchmarks
    base_model = BaseModel(spec)
    base = cached_base_scores(plan, phase=FULL, model_id=model_id(spec), load=base_model,
                              progress=say)  # fmt: skip
    log_base_scores(tracker, state.parent_run_id, base, phase=FULL)
    plan = base_with(plan, base, phase=FULL)
    model, tokenizer = base_model()
    for record in finalists:
        say(f"Finalist {record.trial_id}: scoring {', '.join(plan.tasks)} on the full sets ...")
        assert record.adapter_path is not None
        tuned = PeftModel.from_pretrained(model, record.adapter_path).eval()
        scores, seconds = score_plan(tuned, tokenizer, plan, phase=FULL)
        model = tuned.unload()  # the base again, for the next finalist
        full = record_full_scores(state, tracker, record, scores, plan=plan, seconds=seconds)
        say(describe_scores(record.trial_id, full, plan.base[FULL]))


def record_full_scores(
    state: SweepState, tracker: SweepTracker, record: TrialRecord, scores: Any, *,
    plan: BenchmarkPlan, seconds: float,
) -> dict[str, float]:  # fmt: skip
    """Log a finalist's full-set scores and judge it; returns its primary score per task."""
    heldout = record.metrics.get(plan.heldout_metric)
    metrics = phase_metrics(scores, plan, phase=FULL, heldout=heldout, seconds=seconds)
    tracker.log_metrics_once(record.run_id, metrics, step=max(record.last_step, 0))
    log_samples(tracker, record.run_id, scores, artifact_path=f"benchmarks/{FULL}")
    record.metrics.update(metrics)
    record.finalist = True
    record.final_objective = metrics.get(f"{COMPOSITE}_{FULL}")
    full = primary_scores(scores, plan)
    record.guard = guard_violations(full, plan.base[FULL], plan.guard)
    state.save()
    return full


def describe_scores(trial_id: str, scores: dict[str, float], base: dict[str, float]) -> str:
    """``Finalist t1 (full sets): mmlu 0.2650 (base 0.2600, +0.0050), ...``."""
    parts = [f"{task} {value:.4f} (base {base[task]:.4f}, {value - base[task]:+.4f})"
             for task, value in scores.items() if task in base]  # fmt: skip
    return f"Finalist {trial_id} (full sets): " + ", ".join(parts)
