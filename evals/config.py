"""The evaluation sections of the sweep YAML: the objective, held-out scoring and benchmarks.

The ground floor of the schema: it imports nothing from sweeps/ or trainers/, so the benchmark
plan reads its settings without the driver. ``sweeps/config`` puts these sections together
with the others into ``SweepConfig``. Standard library and pydantic only (no torch).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evals.metric_keys import (
    HELDOUT_TASK_METRIC,
    LOWER_IS_BETTER,
    MINIMISED,
    SECOND_OBJECTIVES,
    heldout,
)

TASK_METRICS = ("exact_match", "field_f1", "rouge_l")


class Section(BaseModel):
    """A section of the sweep YAML: unknown keys are refused, and a parsed config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


HELDOUT_OBJECTIVES = (HELDOUT_TASK_METRIC, *LOWER_IS_BETTER, *(heldout(m) for m in TASK_METRICS))


class _Goal(Section):
    """A metric the sweep optimises, and whether lower or higher is better (by default, lower
    for a loss or a cost)."""

    KNOWN: ClassVar[tuple[str, ...]] = HELDOUT_OBJECTIVES
    metric: str
    mode: Literal["min", "max"] | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in cls.KNOWN:
            raise ValueError(f"unknown metric {value!r}; known: {', '.join(sorted(cls.KNOWN))}")
        return value

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        if self.mode is not None:
            return self.mode
        return "min" if self.metric in MINIMISED else "max"


class ObjectiveTerm(_Goal):
    """One more objective of a multi-objective sweep (``objective.also``)."""

    KNOWN: ClassVar[tuple[str, ...]] = (*HELDOUT_OBJECTIVES, *SECOND_OBJECTIVES)


class Objective(_Goal):
    """The held-out metric alone, or a composite with benchmark deltas, plus a no-regression guard;
    with ``also``, a multi-objective sweep.

    composite = held-out metric + sum(weight * (score - base score)) over benchmark_weights
    (minus the sum when the held-out metric is minimised). A trial that drops more than
    ``guard[task]`` below the base on a benchmark is flagged and never picked as best.

    ``objective`` may also be written as a list: its first entry is ``metric`` (and ``mode``),
    the rest are ``also``. Each entry is a metric name or ``{metric, mode}``.
    """

    metric: str = HELDOUT_TASK_METRIC
    mode: Literal["min", "max"] | None = None
    also: list[ObjectiveTerm] = Field(
        default_factory=list,
        description="More objectives: the sweep searches for their Pareto "
        "front (objective/benchmark_delta, cost/device_seconds, cost/peak_memory_mb, or another "
        "held-out metric).",
    )
    benchmark_weights: dict[str, float] = Field(
        default_factory=dict, description="{task: weight} of benchmark deltas in the objective."
    )
    guard: dict[str, float] = Field(
        default_factory=dict, description="{task: largest allowed drop below the base model}."
    )
    pick: Literal["knee", "first"] = Field(
        "knee",
        description="Which trial of the Pareto front is best: knee (closest to the ideal "
        "point, each objective scaled over the front) or first (best on the first objective).",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: object) -> object:
        """``[heldout/field_f1, {metric: cost/device_seconds, mode: min}]``: the first entry is
        the objective, the others ``also``."""
        if not isinstance(value, list):
            return value
        if not value:
            raise ValueError("an objective list needs at least one metric")
        terms = [{"metric": t} if isinstance(t, str) else t for t in value]
        first = terms[0]
        if not isinstance(first, dict):
            raise ValueError("each objective is a metric name or {metric, mode}")
        return {**first, "also": terms[1:]}

    @model_validator(mode="after")
    def _distinct_objectives(self) -> Objective:
        names = [self.metric, *(t.metric for t in self.also)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"objective names {', '.join(twice)} twice; list each metric once")
        return self

    @field_validator("guard")
    @classmethod
    def _non_negative_margins(cls, value: dict[str, float]) -> dict[str, float]:
        for task, margin in value.items():
            if margin < 0:
                raise ValueError(f"{task}: a guard margin is a drop, so it must be >= 0")
        return value


class HeldoutEval(Section):
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)
    generation_samples: int | None = Field(
        None, ge=1, description="Held-out rows generated per rung for the task metric; None: all."
    )
    logged_generations: int = Field(8, ge=0, description="Sample generations logged per trial.")


class BenchmarksConfig(Section):
    """lm-eval benchmarks: a proxy score for every completed trial, full sets for the finalists."""

    tasks: list[str] = Field(
        default_factory=list, description="lm-eval task names, e.g. arc_challenge, mmlu; [] = off."
    )
    optional: bool = Field(
        False, description="Skip (and say so) tasks whose data cannot be had, instead of failing."
    )
    mirror: str | None = Field(
        None,
        description="Local mirror of HF-schema jsonl files; else $LORA_SWEEP_BENCHMARK_MIRROR.",
    )
    num_fewshot: int | None = Field(None, ge=0, description="None: each task's own default.")
    batch_size: int = Field(16, ge=1, description="Pinned: lm-eval scores shift with batch size.")
    proxy_size: int = Field(
        8,
        ge=1,
        description="Docs per task scored for each trial; groups such as mmlu are "
        "stratified by subtask (each gets its proportional share, rounded).",
    )
    proxy_sizes: dict[str, int] = Field(
        default_factory=dict, description="{task: documents}: proxy_size for some tasks only."
    )
    screen_drop: float = Field(
        0.15,
        gt=0,
        le=1,
        description="A guarded task (objective.guard) is screened on each trial with enough "
        "documents to catch a drop this large (80% power, paired McNemar, alpha 0.05 over two "
        "looks; 0.15: 108 documents), unless proxy_sizes names it. It stops after the first half "
        "once a drop this large is ruled out.",
    )
    finalist_drop: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Finalists are scored on enough documents to detect a drop this large (0.05: "
        "498), or on the full set when it is smaller.",
    )
    proxy_seed: int = 0
    share_prefix: bool = Field(
        True,
        description="Run a question's context once for all its choices (same numbers as "
        "lm-eval's own path to float rounding; 1.6-3x faster on multiple-choice tasks).",
    )
    finalists: int = Field(
        2, ge=0, description="Best trials re-scored on the full sets after the sweep; 0 = none."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="What benchmarks are scored in: auto = bf16 for an fp32 model on a CPU that "
        "multiplies bf16 natively (AMX/AVX-512 BF16; ~3x faster), else the model's dtype; "
        "float32 gives exactly an fp32 lm-eval CLI run's numbers. The base model is scored in "
        "the same dtype, so deltas stay paired.",
    )
    metrics: dict[str, str] = Field(
        default_factory=dict, description="{task: lm-eval metric} used for deltas and the guard."
    )

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, value: list[str]) -> list[str]:
        duplicates = sorted({t for t in value if value.count(t) > 1})
        if duplicates:
            raise ValueError(f"listed twice: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _per_task_keys_are_listed(self) -> BenchmarksConfig:
        for section in ("proxy_sizes", "metrics"):
            unlisted = [t for t in getattr(self, section) if t not in self.tasks]
            if unlisted:
                raise ValueError(f"{section} names {', '.join(unlisted)}, not in tasks")
        if any(size < 1 for size in self.proxy_sizes.values()):
            raise ValueError("proxy_sizes must be >= 1")
        return self
