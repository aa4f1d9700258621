"""What a benchmark scoring returns, as plain data: ``BenchmarkScores`` (lm-eval's metrics per
task, the per-document records paired tests read, what was run) and its JSON form; the proxy's
seeded sample of documents, and a group's score pooled over its subtasks' documents with the
standard error lm-eval leaves out. No lm-eval, no torch."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal, TypedDict

# One document's record, kept for paired tests: doc_id, target, and each metric's value
Sample = dict[str, str | float]


class EvalConfig(TypedDict, total=False):
    """What a scoring ran (``eval_config.json``): lm-eval's settings and documents, and the
    plan's phase and seconds per task (evals/benchmark_plan.py adds those two)."""

    tasks: list[str]
    batch_size: int
    num_fewshot: int | None
    limit: int | float | None
    share_prefix: bool
    documents: dict[str, int]  # per task
    seeds: str
    versions: dict[str, object]  # per task, as lm-eval reports them
    stderr_filled: list[str]  # group/metric pairs whose stderr fill_group_stderr computed
    dtype: str  # what the model was scored in
    phase: str
    seconds: dict[str, float]  # per task


# the config entries that are per-task mappings: merged, not replaced, when scores are merged
PER_TASK_CONFIG: tuple[Literal["documents", "versions", "seconds"], ...] = (
    "documents",
    "versions",
    "seconds",
)


class ScoresJson(TypedDict):
    """BenchmarkScores as JSON (the base model's cached scores)."""

    metrics: dict[str, dict[str, float]]
    samples: dict[str, list[Sample]]
    config: EvalConfig
    groups: dict[str, list[str]]


@dataclass
class BenchmarkScores:
    """lm-eval's metrics per task (its own names), per-sample outputs, and what was run."""

    metrics: dict[str, dict[str, float]]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    config: EvalConfig = field(default_factory=EvalConfig)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> its subtasks

    def members(self, task: str) -> list[str]:
        """A task and, for a group such as ``mmlu``, every subgroup and subtask under it."""
        found = [task]
        for child in self.groups.get(task, []):
            found += self.members(child)
        return found

    def only(self, tasks: list[str]) -> BenchmarkScores:
        """The part of these scores that belongs to ``tasks`` (with their subtasks)."""
        keep = {m for t in tasks for m in self.members(t)}
        return BenchmarkScores(
            metrics={k: v for k, v in self.metrics.items() if k in keep},
            samples={k: v for k, v in self.samples.items() if k in keep},
            config=self.config,
            groups={k: v for k, v in self.groups.items() if k in keep},
        )

    def merge(self, other: BenchmarkScores) -> BenchmarkScores:
        """Both sets of tasks; config entries that are per-task mappings are merged too."""
        config: EvalConfig = {**self.config, **other.config}
        for key in PER_TASK_CONFIG:
            if key in self.config and key in other.config:
                config[key] = {**self.config[key], **other.config[key]}
        return BenchmarkScores(
            metrics={**self.metrics, **other.metrics},
            samples={**self.samples, **other.samples},
            config=config,
            groups={**self.groups, **other.groups},
        )

    def to_json(self) -> ScoresJson:
        return {
            "metrics": self.metrics,
            "samples": self.samples,
            "config": self.config,
            "groups": self.groups,
        }

    @classmethod
    def from_json(cls, raw: ScoresJson) -> BenchmarkScores:
        return cls(**raw)


def fill_group_stderr(scores: BenchmarkScores) -> None:
    """A group whose subtasks have one document each gets no stderr from lm-eval (its pooled
    formula needs a variance per subtask); give it the standard error over all its documents."""
    import statistics

    for group in scores.groups:
        metrics = scores.metrics.get(group, {})
        for name in [m for m in metrics if not m.endswith("_stderr")]:
            if math.isfinite(metrics.get(f"{name}_stderr", math.nan)):
                continue
            values = [
                float(row[name])
                for leaf in scores.members(group)
                for row in scores.samples.get(leaf, [])
                if isinstance(row.get(name), (int, float))
            ]
            if len(values) >= 2:
                metrics[f"{name}_stderr"] = statistics.stdev(values) / math.sqrt(len(values))
                scores.config.setdefault("stderr_filled", []).append(f"{group}/{name}")


def proxy_samples(leaves: dict[str, int], *, size: int, seed: int) -> dict[str, list[int]]:
    """A fixed, seeded subset of ``size`` documents, as {leaf task: document indices}.

    A systematic sample over all the documents, each leaf's in a seeded random order and the
    leaves in the task's own order. A single task gets a random sample. A group (MMLU's 57
    subjects, in its four categories) is stratified by subtask: each gets its proportional share
    of ``size``, rounded down or up, so an 8-document MMLU proxy has 8 subjects spread over the
    categories. Leaves whose share rounds to nothing are left out.
    """
    import random

    frame = [
        (name, index)
        for name, count in leaves.items()
        for index in random.Random(f"{seed}:{name}").sample(range(count), count)
    ]
    size = min(size, len(frame))
    if size < 1:
        return {}
    step = len(frame) / size
    start = random.Random(seed).random() * step
    picked: dict[str, list[int]] = defaultdict(list)
    for k in range(size):
        name, index = frame[min(int(start + k * step), len(frame) - 1)]
        picked[name].append(index)
    return {name: sorted(ids) for name, ids in sorted(picked.items())}


def pool_group(scores: BenchmarkScores, group: str) -> BenchmarkScores:
    """Scores of some of a group's subtasks, plus the group's own: the mean of each metric over
    all their documents (lm-eval's size-weighted mean, as MMLU uses), with its standard error."""
    leaves = list(scores.samples)
    names = sorted(
        {m for leaf in leaves for m in scores.metrics.get(leaf, {}) if not m.endswith("_stderr")}
    )
    pooled = {}
    for name in names:
        values = [
            float(row[name])
            for leaf in leaves
            for row in scores.samples[leaf]
            if isinstance(row.get(name), (int, float))
        ]
        if values:
            pooled[name] = sum(values) / len(values)
    out = BenchmarkScores(
        metrics={**scores.metrics, group: pooled},
        samples=scores.samples,
        config=scores.config,
        groups={**scores.groups, group: leaves},
    )
    fill_group_stderr(out)
    return out
