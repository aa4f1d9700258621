"""Benchmarks in looks: add documents only while they can still change the verdict.

Two tiers use it, each against the base model's scores on the same documents (``plan.base_items``
of the phase), with documents taken in a fixed, seeded order at a few pre-declared looks, and the
paired interval of the delta after each look at confidence 1 - alpha/looks (Bonferroni over the
looks, so the repeated looks do not inflate the error):

- **Screening** (each completed trial, a guarded task): two looks, half the screening documents
  and then the rest; the screening size is what catches a ``screen_drop`` collapse at alpha/2
  (108 documents for 15 points). It stops after the first look once the interval rules such a
  collapse out (no collapse), or settles the guard's margin.
- **Finalists** (after the sweep): up to ``finalist_drop``'s documents (498 for 5 points) at
  ``evals.power.look_sizes`` (100, 223, 498).

At any look a guarded task stops once the interval lies wholly below minus the margin
(regressed) or wholly above it (cleared); any task stops after the first look when the base
model's score on all the phase's documents is within noise of chance: a regression cannot show
there (ARC, MMLU and TruthfulQA-MC2 for SmolLM2-135M). Otherwise it goes on to the last look.

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

from evals.benchmark_plan import SCREENING_LOOKS, BenchmarkPlan, item_scores, score_plan
from evals.benchmark_scores import BenchmarkScores, EvalConfig, Sample
from evals.metric_keys import FULL, PROXY
from evals.objective import chance_note
from evals.paired import compare_paired
from evals.power import look_alpha, look_sizes
from evals.scoring_dtype import scored_in, scoring_dtype

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

FIRST_LOOK = 100
LOOKS = 3
REGRESSED, CLEARED, NO_COLLAPSE = "regressed", "cleared", "no collapse"
AT_CHANCE, ALL = "at chance", "all documents"


@dataclass(frozen=True)
class Looks:
    """Pre-declared looks at one task's documents in ``phase``; ``collapse``: stop too once the
    interval rules out a drop this large (the screening tier's question)."""

    phase: str
    sizes: tuple[int, ...]
    collapse: float | None = None

    @property
    def alpha(self) -> float:
        return look_alpha(len(self.sizes))


def finalist_looks(documents: int) -> Looks:
    """100, 223, 498 for 498 documents (fewer looks when the set is small)."""
    first = min(FIRST_LOOK, documents)
    return Looks(FULL, tuple(look_sizes(documents, first=first, looks=LOOKS)))


def screening_looks(documents: int, *, collapse: float) -> Looks:
    """Half the screening documents, then the rest."""
    if documents < SCREENING_LOOKS:
        return Looks(PROXY, (documents,), collapse)
    first = documents // SCREENING_LOOKS
    return Looks(PROXY, tuple(look_sizes(documents, first=first, looks=SCREENING_LOOKS)), collapse)


@dataclass(frozen=True)
class Looked:
    """How a task's scoring in looks ended: documents scored, looks taken, and why it stopped."""

    task: str
    documents: int
    looks: int
    stopped: str  # regressed | cleared | no collapse | at chance | all documents

    def describe(self) -> str:
        return f"{self.task}: {self.documents} documents in {self.looks} look(s), {self.stopped}"


def look_order(plan: BenchmarkPlan, task: str, *, phase: str, seed: int) -> list[tuple[str, int]]:
    """The base model's documents of ``task`` in ``phase`` (leaf task, id), in a seeded order."""
    keys = plan.base_items.get(phase, {}).get(task, {})
    docs = sorted((leaf, int(doc_id)) for leaf, doc_id in (k.rsplit("/", 1) for k in keys))
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
    names = sorted(
        {k for part in parts for k in part.metrics.get(task, {}) if not k.endswith("_stderr")}
    )
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
    config["seconds"] = {task: sum(p.config.get("seconds", {}).get(task, 0.0) for p in parts)}
    return BenchmarkScores(
        metrics={task: metrics}, samples=dict(samples), config=config, groups=groups
    )


def at_chance(plan: BenchmarkPlan, task: str, *, phase: str) -> str | None:
    """The chance note for the base's score on all of ``task``'s documents in ``phase``."""
    values = list(plan.base_items.get(phase, {}).get(task, {}).values())
    if len(values) < 2:
        return None
    stderr = statistics.stdev(values) / math.sqrt(len(values))
    return chance_note(task, statistics.fmean(values), stderr)


def score_in_looks(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    plan: BenchmarkPlan,
    *,
    task: str,
    looks: Looks,
    margin: float | None,
    seed: int = 0,
) -> tuple[BenchmarkScores, Looked]:
    """``task``'s scores, look by look, against ``plan``'s base items of ``looks.phase``."""
    order = look_order(plan, task, phase=looks.phase, seed=seed)
    chance = at_chance(plan, task, phase=looks.phase)
    parts: list[BenchmarkScores] = []
    done, stopped = 0, None
    for size in looks.sizes:
        batch = with_documents(plan, task, phase=looks.phase, docs=as_samples(order[done:size]))
        parts.append(score_plan(model, tokenizer, batch, phase=looks.phase, tasks=[task])[0])
        done = size
        stopped = _verdict(pooled(parts, task), plan, task=task, margin=margin, looks=looks)
        if stopped is None and chance is not None:
            stopped = AT_CHANCE
        if stopped is not None:
            break
    return pooled(parts, task), Looked(task, done, len(parts), stopped or ALL)


def score_screening(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, plan: BenchmarkPlan
) -> tuple[BenchmarkScores, list[Looked]]:
    """A trial's screening tier: each guarded task in looks (``screening_looks``), the others
    on their proxy documents; the model is cast for scoring once, for all of them."""
    scores, looked = BenchmarkScores(metrics={}), list[Looked]()
    with scored_in(model, scoring_dtype(model, plan.dtype)) as scored:
        for task in plan.tasks:
            margin = plan.guard.get(task)
            documents = len(plan.base_items.get(PROXY, {}).get(task, {}))
            if margin is None or plan.screen_drop is None or not documents:  # no base to pair with
                scores = scores.merge(
                    score_plan(scored, tokenizer, plan, phase=PROXY, tasks=[task])[0]
                )
                continue
            looks = screening_looks(documents, collapse=plan.screen_drop)
            part, how = score_in_looks(
                scored, tokenizer, plan, task=task, looks=looks, margin=margin
            )
            scores, looked = scores.merge(part), [*looked, how]
    scores.config["tasks"], scores.config["phase"] = plan.tasks, PROXY
    return scores, looked


def with_documents(
    plan: BenchmarkPlan, task: str, *, phase: str, docs: dict[str, list[int]]
) -> BenchmarkPlan:
    """The plan with ``task`` scored on ``docs`` in ``phase``."""
    if phase == PROXY:
        return replace(plan, proxy={**plan.proxy, task: docs})
    return replace(plan, finalist_documents={**plan.finalist_documents, task: docs})


def _verdict(
    scores: BenchmarkScores, plan: BenchmarkPlan, *, task: str, margin: float | None, looks: Looks
) -> str | None:
    """regressed / cleared once the look's interval settles the guard's margin, no collapse once
    it rules out ``looks.collapse``; else None."""
    if margin is None:
        return None
    ours, theirs = (
        item_scores(scores, plan, task),
        plan.base_items.get(looks.phase, {}).get(task, {}),
    )
    if not set(ours) & set(theirs):
        return None
    paired = compare_paired(ours, theirs, confidence=1 - looks.alpha, resamples=2000)
    if paired.ci_high < -margin:
        return REGRESSED
    if paired.ci_low > -margin:
        return CLEARED
    if looks.collapse is not None and paired.ci_low > -looks.collapse:
        return NO_COLLAPSE
    return None
