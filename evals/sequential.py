"""The finalist tier in looks: add documents only while they can still change the verdict.

A finalist is scored on enough documents for a ``finalist_drop`` resolution (498 for 5 points),
against the base model's scores on the same documents (scored once per machine and cached). The
documents are taken in a fixed, seeded order, at a few pre-declared looks (``evals.power.
look_sizes``: 100, 223, 498). After each look the paired interval of the delta, at confidence
1 - alpha/looks (Bonferroni over the looks, so the repeated looks do not inflate the error),
decides whether to go on:

- on a guarded task it stops once the interval lies wholly below minus the margin (regressed) or
  wholly above it (cleared);
- on any task it stops after the first look when the base model's score on all the documents is
  within noise of chance: a regression cannot show there (ARC, MMLU and TruthfulQA-MC2 for
  SmolLM2-135M);
- otherwise it goes on to the last look.

What is logged afterwards (``phase_metrics``) is the ordinary 95% interval and the resolution of
the documents actually scored, so a stop is visible in ``documents``.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from evals.benchmark_plan import BenchmarkPlan, item_scores, score_plan
from evals.benchmarks import BenchmarkScores, EvalConfig, Sample
from evals.metric_keys import FULL
from evals.objective import chance_note, primary_metric
from evals.paired import compare_paired
from evals.power import look_alpha, look_sizes

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

FIRST_LOOK = 100
LOOKS = 3
REGRESSED, CLEARED, AT_CHANCE, ALL = "regressed", "cleared", "at chance", "all documents"


@dataclass(frozen=True)
class Looked:
    """How a task's finalist scoring ended: documents scored, looks taken, and why it stopped."""

    task: str
    documents: int
    looks: int
    stopped: str  # regressed | cleared | at chance | all documents

    def describe(self) -> str:
        return f"{self.task}: {self.documents} documents in {self.looks} look(s), {self.stopped}"


def look_order(base: BenchmarkScores, task: str, *, seed: int) -> list[tuple[str, int]]:
    """The base model's documents of ``task`` (leaf task, document id), in a seeded order."""
    docs = [(leaf, int(row["doc_id"])) for leaf in base.members(task)
            for row in base.samples.get(leaf, [])]  # fmt: skip
    random.Random(f"{seed}:{task}:looks").shuffle(docs)
    return docs


def as_samples(docs: list[tuple[str, int]]) -> dict[str, list[int]]:
    picked: dict[str, list[int]] = defaultdict(list)
    for leaf, doc_id in docs:
        picked[leaf].append(doc_id)
    return {leaf: sorted(ids) for leaf, ids in sorted(picked.items())}


def pooled(parts: list[BenchmarkScores], task: str) -> BenchmarkScores:
    """The looks' scores as one: every document's record, and each metric's mean over all of
    them with its standard error (lm-eval's aggregate for these tasks is the mean)."""
    samples: dict[str, list[Sample]] = defaultdict(list)
    for part in parts:
        for leaf, rows in part.samples.items():
            samples[leaf] += rows
    rows = [row for leaf_rows in samples.values() for row in leaf_rows]
    names = sorted({k for part in parts for k in part.metrics.get(task, {})
                    if not k.endswith("_stderr")})  # fmt: skip
    metrics: dict[str, float] = {}
    for name in names:
        values = [float(r[name]) for r in rows if isinstance(r.get(name), (int, float))]
        if values:
            metrics[name] = statistics.fmean(values)
            if len(values) > 1:
                metrics[f"{name}_stderr"] = statistics.stdev(values) / math.sqrt(len(values))
    leaves = list(samples)
    groups = {task: leaves} if leaves != [task] else {}
    config: EvalConfig = {**parts[-1].config}
    config["documents"] = {leaf: len(r) for leaf, r in samples.items()}
    return BenchmarkScores(metrics={task: metrics}, samples=dict(samples), config=config,
                           groups=groups)  # fmt: skip


def at_chance(base: BenchmarkScores, plan: BenchmarkPlan, task: str) -> str | None:
    """The chance note for the base's score on all its finalist documents, if any."""
    metrics = base.metrics.get(task, {})
    if not metrics:
        return None
    name = primary_metric(task, metrics, plan.metric_overrides)
    return chance_note(task, metrics.get(name), metrics.get(f"{name}_stderr"))


def score_in_looks(
    model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, plan: BenchmarkPlan,
    *, task: str, base: BenchmarkScores, margin: float | None, seed: int = 0,
) -> tuple[BenchmarkScores, Looked]:  # fmt: skip
    """A finalist's scores on ``task``, look by look, against ``plan``'s base items (FULL)."""
    order = look_order(base, task, seed=seed)
    sizes = look_sizes(len(order), first=min(FIRST_LOOK, len(order)), looks=LOOKS)
    alpha = look_alpha(len(sizes))
    chance = at_chance(base, plan, task)
    parts: list[BenchmarkScores] = []
    done, stopped = 0, None
    for size in sizes:
        batch = replace(plan, finalist_documents={task: as_samples(order[done:size])})
        parts.append(score_plan(model, tokenizer, batch, phase=FULL, tasks=[task])[0])
        done = size
        stopped = _verdict(pooled(parts, task), plan, task=task, margin=margin, alpha=alpha)
        if stopped is None and chance is not None:
            stopped = AT_CHANCE
        if stopped is not None:
            break
    return pooled(parts, task), Looked(task, done, len(parts), stopped or ALL)


def _verdict(
    scores: BenchmarkScores, plan: BenchmarkPlan, *, task: str, margin: float | None, alpha: float
) -> str | None:
    """regressed / cleared once the look's interval settles the guard's margin; else None."""
    if margin is None:
        return None
    ours, theirs = item_scores(scores, plan, task), plan.base_items.get(FULL, {}).get(task, {})
    if not set(ours) & set(theirs):
        return None
    paired = compare_paired(ours, theirs, confidence=1 - alpha, resamples=2000)
    if paired.ci_high < -margin:
        return REGRESSED
    if paired.ci_low > -margin:
        return CLEARED
    return None
