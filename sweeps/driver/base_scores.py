"""The base model's held-out scores: the yardstick every trial is read against.

Cached across sweeps by (model, data, template, eval settings). When the cache has them, a sweep
reads them at once; when not, they are computed in a driver thread beside the trials (one torch
thread), so the first trial does not wait for them. The driver records them (state, the parent
run's ``base/*`` metrics and predictions) at the first event after they are ready, and before the
sweep's summary.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from evals.heldout import ScoredItem
from evals.metric_keys import BASE, LOWER_IS_BETTER, with_group
from evals.objective import COMPOSITE
from sweeps.console import Say
from sweeps.driver.preflight import LaunchPlan, available_cpus
from sweeps.serving.scoring import heldout_cache_key
from sweeps.tracking.state import SweepState, write_json_atomic

if TYPE_CHECKING:
    from sweeps.tracking.mlflow_facade import SweepTracker

Scores = tuple[dict[str, float], list[ScoredItem]]


def cache_file(plan: LaunchPlan) -> Path:
    from trainers.models import cache_root

    return cache_root() / "base_scores" / f"{heldout_cache_key(plan.spec, None)}.json"


def compute_base_scores(plan: LaunchPlan, *, cpus: int) -> Scores:
    """Score the base model on the held-out set (``cpus`` torch threads) and cache the result."""
    from trainers.scorer import score_base_model

    scores = score_base_model(plan.spec.model_copy(update={"cpus": cpus}))
    metrics = scores.as_metrics()
    if plan.task_metric == "none":
        metrics = {k: v for k, v in metrics.items() if k in LOWER_IS_BETTER}
    write_json_atomic(cache_file(plan), {"metrics": metrics, "items": scores.items})
    return metrics, scores.items


class BaseScoring:
    """The base model's scores: cached, or being computed in a thread beside the trials."""

    def __init__(self, plan: LaunchPlan, *, say: Say, background: bool) -> None:
        self.plan, self.say = plan, say
        self.scores: Scores | None = None
        self.error: BaseException | None = None
        self.recorded = False
        self._thread: threading.Thread | None = None
        cache = cache_file(plan)
        if cache.is_file():
            cached = json.loads(cache.read_text())
            self.scores = (cached["metrics"], cached["items"])
            say("Base model held-out scores: cached.")
        elif background:
            say(
                "Scoring the base model on the held-out set beside the first trials (once; "
                "cached for later sweeps) ..."
            )
            self._thread = threading.Thread(target=self._compute, name="base-scores", daemon=True)
            self._thread.start()
        else:
            say("Scoring the base model on the held-out set (once; cached for later sweeps) ...")
            self.scores = compute_base_scores(plan, cpus=available_cpus())

    def _compute(self) -> None:
        import torch

        threads = torch.get_num_threads()  # set_num_threads is the whole process's
        try:
            self.scores = compute_base_scores(self.plan, cpus=1)
        except BaseException as exc:  # said by record(); launch goes on, resume computes again
            self.error = exc
        finally:
            torch.set_num_threads(threads)

    def ready(self) -> bool:
        return self.scores is not None or self.error is not None

    def join(self) -> None:
        """Wait for the thread, if one is computing (its failure is record()'s to say)."""
        if self._thread is not None:
            if self._thread.is_alive():
                self.say("Waiting for the base model's held-out scores ...")
            self._thread.join()

    def wait(self) -> Scores:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.scores is not None
        return self.scores

    def metrics(self) -> dict[str, float]:
        """The scores as the sweep records them (the composite's base is its held-out metric)."""
        metrics = dict(self.wait()[0])
        benchmarks = self.plan.spec.benchmarks
        if benchmarks is not None and benchmarks.weights:
            metrics[COMPOSITE] = metrics.get(benchmarks.heldout_metric, float("nan"))
        return metrics

    def record(self, state: SweepState, tracker: SweepTracker) -> bool:
        """Put the scores in the state and on the parent run, once; False while not ready. A
        failure is said in one line and the sweep goes on without them."""
        if self.recorded or not self.ready():
            return self.recorded
        if self.error is not None:
            self.say(
                f"Warning: the base model's held-out scoring failed ({type(self.error).__name__}"
                f": {str(self.error).splitlines()[0][:200] if str(self.error) else ''}); the "
                "trials go on, read without it"
            )
            self.recorded = True
            return True
        metrics, items = self.metrics(), self.wait()[1]
        state.base_metrics = metrics
        tracker.log_metrics_once(state.parent_run_id, with_group(BASE, metrics), step=0)
        tracker.log_texts(
            state.parent_run_id,
            {"base_heldout_predictions.jsonl": "".join(json.dumps(i) + "\n" for i in items)},
        )
        state.save()
        self.recorded = True
        value = metrics.get(state.objective_metric, float("nan"))
        self.say(f"Base model {state.objective_metric}={value:.4f}")
        return True


def base_scores(plan: LaunchPlan, *, progress: Say = print) -> Scores:
    """The base model's held-out metrics and items, from the cache or computed now."""
    return BaseScoring(plan, say=progress, background=False).wait()
