"""The sweep YAML's typed schema: parsed with ``yaml.safe_load`` and checked before any compute.

This module imports neither torch, ray nor mlflow, so ``sweep validate`` stays fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from evals.metric_keys import (
    HELDOUT_TASK_METRIC,
    LOWER_IS_BETTER,
    MINIMISED,
    SECOND_OBJECTIVES,
    heldout,
)

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TASK_METRICS = ("exact_match", "field_f1", "rouge_l")


class ConfigError(ValueError):
    """A config problem, already phrased as one line: ``file:line: field: message``."""


def check_safe_name(value: str, *, what: str = "name") -> str:
    """Reject names that could escape a directory (``../``, absolute paths, NUL, odd characters)."""
    if not SAFE_NAME.match(value) or ".." in value:
        raise ConfigError(
            f"{what} {value!r} must be 1-100 characters of letters, digits, '.', '_' or '-', "
            "start with a letter or digit, and contain no '..'"
        )
    return value


# --------------------------------------------------------------------------- search space
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogUniform(_Strict):
    type: Literal["loguniform"]
    low: float
    high: float


class Uniform(_Strict):
    type: Literal["uniform"]
    low: float
    high: float


class IntRange(_Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1


class Choice(_Strict):
    type: Literal["choice"]
    values: list[Any]


class RatioOfR(_Strict):
    """``lora_alpha = ratio * lora_r``, with the ratio chosen from ``values``."""

    type: Literal["ratio_of_r"]
    values: list[float]


ParamSpec = float | int | LogUniform | Uniform | IntRange | Choice | RatioOfR


SPEC_TYPES: dict[str, type[BaseModel]] = {
    "loguniform": LogUniform,
    "uniform": Uniform,
    "int": IntRange,
    "choice": Choice,
    "ratio_of_r": RatioOfR,
}


YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def yaml_number(value: Any) -> Any:
    """``1e-4`` as the number it is: PyYAML follows YAML 1.1, which reads an exponent without a
    dot (``1e-4``, ``3e-5``) as a string; YAML 1.2 and every fine-tuning guide mean a number."""
    if isinstance(value, str) and YAML11_FLOAT.match(value.strip()):
        return float(value)
    return value


def _expand_shorthand(value: Any) -> Any:
    """A list means a categorical choice; a scalar a fixed value; a mapping names its ``type``.

    Resolving the mapping here (not through pydantic's union) keeps errors to one line each.
    """
    value = yaml_number(value)
    if isinstance(value, list):
        value = {"type": "choice", "values": [yaml_number(v) for v in value]}
    if isinstance(value, dict) and isinstance(value.get("values"), list):
        value = {**value, "values": [yaml_number(v) for v in value["values"]]}
    if isinstance(value, dict):
        kind = value.get("type")
        if kind not in SPEC_TYPES:
            raise ValueError(f"type must be one of {', '.join(SPEC_TYPES)}; got {kind!r}")
        try:
            return SPEC_TYPES[kind].model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"].lower())
                for e in exc.errors()
            )
            raise ValueError(f"{kind}: {problems}") from None
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
        raise ValueError(
            f"expected a number, a list of choices or a mapping with 'type', got {value!r}"
        )
    return value


def _param_values(spec: ParamSpec) -> list[float]:
    """Every value a spec can produce at its bounds (enough to check its domain)."""
    if isinstance(spec, (LogUniform, Uniform, IntRange)):
        if spec.high < spec.low:
            raise ValueError(f"high ({spec.high}) must be >= low ({spec.low})")
        if isinstance(spec, IntRange) and spec.step < 1:
            raise ValueError(f"step must be >= 1, got {spec.step}")
        return [spec.low, spec.high]
    if isinstance(spec, (Choice, RatioOfR)):
        if not spec.values:
            raise ValueError("choice list is empty: give at least one value")
        return list(spec.values)
    return [spec]


def _domain(
    *, integer: bool = False, low: float = -math.inf, low_open: bool = False, high: float = math.inf
) -> Callable[[ParamSpec], ParamSpec]:
    """An after-validator checking that every value a spec can yield lies in the domain."""

    def check(spec: ParamSpec) -> ParamSpec:
        if isinstance(spec, RatioOfR):
            raise ValueError("'ratio_of_r' is only allowed for lora_alpha")
        for value in _param_values(spec):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"values must be numbers, got {value!r}")
            if integer and (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"values must be positive integers, got {value!r}")
            if not math.isfinite(value) or value < low or (low_open and value == low):
                bound = f"> {low:g}" if low_open else f">= {low:g}"
                raise ValueError(f"values must be {bound}, got {value!r}")
            if value > high:
                raise ValueError(f"values must be <= {high:g}, got {value!r}")
        if isinstance(spec, LogUniform) and spec.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {spec.low!r}")
        return spec

    return check


def _alpha_domain(spec: ParamSpec) -> ParamSpec:
    if isinstance(spec, RatioOfR):
        for ratio in _param_values(spec):
            if ratio <= 0:
                raise ValueError(f"ratio_of_r values must be > 0, got {ratio!r}")
        return spec
    return _domain(low=0, low_open=True)(spec)


def _target_choice(value: Any) -> Any:
    """search_space.lora_target_modules: a choice among target sets, each a preset
    ("all-linear", "attention") or module names joined by commas ("q_proj,v_proj")."""
    from trainers.targets import join_targets, split_targets

    def one(item: Any) -> str:
        valid = isinstance(item, str) or (
            isinstance(item, list) and all(isinstance(n, str) for n in item))  # fmt: skip
        names = split_targets(item) if valid else []
        if not names:
            raise ValueError(f"a target set is a preset (all-linear, attention) or module names "
                             f"like 'q_proj,v_proj'; got {item!r}")  # fmt: skip
        return join_targets(names)

    if isinstance(value, dict) and value.get("type") == "choice":
        value = value.get("values")
    if isinstance(value, list) and value:
        return Choice(type="choice", values=[one(item) for item in value])
    if isinstance(value, str):
        return one(value)
    raise ValueError("give a list of target sets, e.g. [attention, all-linear]")


_Shorthand = BeforeValidator(_expand_shorthand)
PositiveFloat = Annotated[ParamSpec, _Shorthand, AfterValidator(_domain(low=0, low_open=True))]
PositiveInt = Annotated[ParamSpec, _Shorthand, AfterValidator(_domain(integer=True, low=1))]
UnitInterval = Annotated[ParamSpec, _Shorthand, AfterValidator(_domain(low=0, high=0.999))]
NonNegative = Annotated[ParamSpec, _Shorthand, AfterValidator(_domain(low=0))]
Alpha = Annotated[ParamSpec, _Shorthand, AfterValidator(_alpha_domain)]
TargetSets = Annotated[Choice | str, BeforeValidator(_target_choice)]


# Training knobs a trial may take from the search (TrialSpec.with_searched sets them per trial)
SEARCHABLE_TRAINING = ("micro_batch_size", "gradient_accumulation_steps", "lora_target_modules")
# Knobs with a fixed value in training: that value, unless search_space searches them
TRAINING_KNOBS = ("lora_dropout", "weight_decay", "warmup_ratio", *SEARCHABLE_TRAINING)


class SearchSpace(_Strict):
    """What Optuna samples for each trial. A scalar fixes a value; a list is a categorical choice."""

    learning_rate: PositiveFloat = LogUniform(type="loguniform", low=1e-4, high=1e-3)
    lora_r: PositiveInt = Choice(type="choice", values=[8, 16])
    lora_alpha: Alpha = RatioOfR(type="ratio_of_r", values=[2.0])
    num_epochs: PositiveInt = 1
    sequence_len: PositiveInt = 512
    lora_dropout: UnitInterval | None = None
    weight_decay: NonNegative | None = None
    warmup_ratio: UnitInterval | None = None
    micro_batch_size: PositiveInt | None = None
    gradient_accumulation_steps: PositiveInt | None = None
    lora_target_modules: TargetSets | None = None


# --------------------------------------------------------------------------- sections
DataFormat = Literal["auto", "alpaca", "dolly", "instruction_response", "question_answer",
                     "prompt_completion", "prompt_response", "input_output", "text_label",
                     "hash_pairs", "text", "chat"]  # fmt: skip
# Too little data (refused unless data.allow_small; docs/data.md "Too little data" says why).
MIN_TRAIN_ROWS = 32
MIN_HELDOUT_ROWS = 20


class DataConfig(_Strict):
    train: str = Field(description="Training file: .jsonl, .json, .csv, .parquet or .txt.")
    heldout: str | None = Field(None, description="Held-out file; else split off val_set_size.")
    val_set_size: float = Field(0.1, gt=0, lt=1, description="Held-out fraction when no file.")
    format: DataFormat = Field("auto", description="auto: the shape of the first row's keys.")
    template: Literal["auto", "chat", "alpaca", "plain"] = Field(
        "auto", description="auto: the model's chat template when it has one, else alpaca."
    )
    system_prompt: str | None = None
    instruction: str | None = Field(
        None, description="text+label rows: the instruction the label answers (default: 'What "
        "is the <label column> of this text?').",
    )  # fmt: skip
    label_field: str | None = Field(
        None, description="Your label column: for text rows the label is the response; for any "
        "shape it stratifies the split.",
    )  # fmt: skip
    columns: dict[str, str] = Field(
        default_factory=dict, description="Rename columns: {our_name: your_column}."
    )
    task_metric: Literal["auto", "exact_match", "field_f1", "rouge_l"] = "auto"
    split_seed: int = 0
    allow_contaminated: bool = Field(
        False, description="Launch even if training rows share 13-grams with held-out or "
        "benchmark items (refused otherwise).",
    )  # fmt: skip
    allow_small: bool = Field(
        False, description=f"Launch with fewer than {MIN_TRAIN_ROWS} training or "
        f"{MIN_HELDOUT_ROWS} held-out rows (refused otherwise: too few to rank trials).",
    )  # fmt: skip

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        from trainers.data import KNOWN_COLUMNS

        for key in value:
            if key not in KNOWN_COLUMNS:
                raise ValueError(f"unknown column {key!r}; known: {', '.join(KNOWN_COLUMNS)}")
        return value


class PrepareConfig(_Strict):
    """The steps of ``sweep data prepare``: the YAML's ``prepare:`` section, which ``sweep launch``
    runs on data.train before anything else, and field for field that verb's step flags."""

    clean: bool = Field(True, description="Unicode NFC, control characters, whitespace.")
    speaker_tags: bool = Field(False, description="Normalise 'SPEAKER_1:' tags.")
    fillers: bool = Field(False, description="Remove um/uh/erm fillers.")
    redact: bool = Field(
        True, description="Redact emails, phones, cards, IPs (names with presidio)."
    )
    dedup: bool = Field(True, description="Drop exact and near duplicates.")
    near_dedup: bool = Field(True, description="MinHash near duplicates (with dedup).")
    near_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard threshold.")
    decontaminate: bool = Field(
        True, description="Drop training rows sharing an n-gram with a held-out row or a "
        "benchmark (benchmarks.tasks in a sweep YAML).",
    )  # fmt: skip
    quality: bool = Field(True, description="Flag short/empty responses, echoes, too long rows.")
    min_response_chars: int | None = Field(
        None, ge=0, description="Flag responses shorter than N characters (default: decided "
        "from the data; none when answers are short: labels, numbers, letters).",
        json_schema_extra={"metavar": "N"},
    )  # fmt: skip
    check_seq_len: bool = Field(
        True, description="Flag rows longer than max_seq_len tokens (sweep launch: the largest "
        "sequence_len, measured with base_model's tokenizer).",
    )  # fmt: skip
    drop_flagged: bool = Field(
        True, description="Drop the rows the quality step flags, and count them (--keep-flagged "
        "or false: report them only).", json_schema_extra={"negative_flag": "--keep-flagged"},
    )  # fmt: skip


InitLoraWeights = Literal["default", "gaussian", "pissa", "olora"]  # PEFT's, True as "default"
BASE_REWRITING_INITS = ("pissa", "olora")  # they move the top of each base weight into the adapter


class TrainingConfig(_Strict):
    """Knobs every trial shares (Axolotl names)."""

    micro_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    optimizer: Literal["adamw_torch", "adamw", "sgd", "paged_adamw_8bit", "paged_adamw_32bit"] = (
        "adamw_torch"
    )
    adapter: Literal["lora", "qlora"] = Field(
        "lora", description="qlora: the base model in 4-bit NF4 (bitsandbytes, double "
        "quantisation, bf16 compute); needs a CUDA GPU.",
    )  # fmt: skip
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Base weights and autocast: auto = bf16 on a GPU that has it, else "
        "fp32; fp16 (with loss scaling) needs a CUDA GPU. LoRA weights stay fp32.",
    )  # fmt: skip
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, ~30% slower."
    )
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="all-linear (every linear layer of the blocks: perf/lora_curves.csv's "
        "evidence), attention, or module names.",
    )  # fmt: skip
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA: scale by alpha/sqrt(r), "
                             "not alpha/r.")  # fmt: skip
    use_dora: bool = Field(
        False, description="DoRA: each adapted layer also trains a magnitude vector (PEFT's "
        "lora_magnitude_vector); better at low r, slower steps.",
    )  # fmt: skip
    init_lora_weights: InitLoraWeights = Field(
        "default", description="default: A random, B zero; gaussian: A ~ N(0, 1/r); pissa / "
        "olora: A and B from each weight's SVD / QR, the base keeps the rest (adapter: lora, no "
        "DoRA; saved as a plain LoRA of rank 2r).",
    )  # fmt: skip
    loraplus_lr_ratio: float | None = Field(
        None, ge=1, description="LoRA+: the B matrices learn at this multiple of learning_rate "
        "(the A matrices'); None: one learning rate.",
    )  # fmt: skip
    max_grad_norm: float = Field(1.0, gt=0)
    evals_per_epoch: int = Field(2, ge=1, description="Rungs per epoch: held-out eval + report.")
    sample_packing: bool = Field(
        False,
        description="Pack each micro-batch into one row (pays off with flash-attention varlen "
        "kernels); default pads to the longest row, cheaper with SDPA on CPU.",
    )
    seed: int = 42

    @field_validator("lora_target_modules")
    @classmethod
    def _non_empty_targets(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("choice list is empty: name at least one module")
        return value

    @model_validator(mode="after")
    def _base_rewriting_inits(self) -> TrainingConfig:
        """PiSSA and OLoRA move the top of each base weight into the adapter and keep the rest
        (the residual) in the base: a 4-bit base cannot hold that residual exactly, and the
        adapter is saved converted to a plain LoRA, which has no place for DoRA's magnitudes."""
        init = self.init_lora_weights
        if init not in BASE_REWRITING_INITS:
            return self
        if self.adapter == "qlora":
            raise ValueError(
                f"init_lora_weights: {init} rewrites the base weights, which adapter: qlora keeps "
                "in 4-bit: use adapter: lora, or init_lora_weights: default or gaussian"
            )
        if self.use_dora:
            raise ValueError(
                f"use_dora with init_lora_weights: {init}: a {init} adapter is saved converted to "
                "a plain LoRA (for any base to load), which drops DoRA's magnitudes; choose one"
            )
        return self


class SearchConfig(_Strict):
    algorithm: Literal["tpe", "random", "grid", "gp", "cmaes", "qmc", "nsga2"] = Field(
        "tpe", description="The Optuna sampler: tpe, random, grid, gp (Gaussian process), cmaes "
        "and qmc (they search the ranges; choices are sampled at random), nsga2.",
    )  # fmt: skip
    multivariate: bool = Field(
        False, description="tpe: model the knobs jointly (Optuna's multivariate TPE)."
    )
    group: bool = Field(
        False, description="tpe with multivariate: model the knobs that appear together as groups."
    )
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    seed: int = 0
    storage: str | None = Field(
        None, description="The Optuna study's database URL, e.g. postgresql://user@host/optuna "
        "for a cluster (pip install -e '.[cluster]'); default: sqlite in the sweep's directory.",
    )  # fmt: skip
    warm_start: str | None = Field(
        None, description="A prior sweep (its name in tracking.state_dir, or its directory): "
        "its finished trials that fit this space seed the new study (same objective).",
    )  # fmt: skip


class AshaConfig(_Strict):
    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, description="Rungs every trial runs before it can stop.")
    reduction_factor: float = Field(2.0, gt=1)


class NoScheduler(_Strict):
    type: Literal["none"]


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    memory_check: Literal["warn", "drop", "off"] = Field(
        "warn", description="Before launch, estimate each sequence_len's peak GPU memory (at the "
        "largest lora_r): warn about those over the GPU share, or drop them from the search.",
    )  # fmt: skip

    @field_validator("gpu")
    @classmethod
    def _whole_if_above_one(cls, value: float) -> float:
        if value > 1 and not value.is_integer():
            raise ValueError(
                f"a fraction of a GPU must be <= 1; above 1 use whole GPUs, got {value}"
            )
        return value


class Recovery(_Strict):
    """What a fault may cost: restarts of a killed trial, and the checkpoints kept per trial."""

    max_retries: int = Field(
        1, ge=0, description="Restarts of a killed or crashed trial, each from its newest intact "
        "checkpoint; 0 = a killed trial fails at once.",
    )  # fmt: skip
    keep_checkpoints: int = Field(
        2, ge=1, description="Checkpoints kept per trial, the latest always among them (with 2 or "
        "more, a damaged latest falls back to an older one instead of failing).",
    )  # fmt: skip
    keep_best_by: Literal["latest", "objective"] = Field(
        "latest", description="latest: the most recent; objective: the best by the sweep's "
        "objective (plus the latest, which restarts need).",
    )  # fmt: skip
    keep_finished_checkpoints: bool | None = Field(
        None, description="Keep the checkpoints of a trial that completed or was stopped early; "
        "by default they are removed when it ends (its last adapter stays in adapters/<trial>; a "
        "failed trial keeps them, for resume). Unset: kept only with keep_best_by: objective.",
    )  # fmt: skip

    @property
    def removes_finished_checkpoints(self) -> bool:
        """Whether a trial's checkpoints go when it completes or is stopped early."""
        if self.keep_finished_checkpoints is None:
            return self.keep_best_by != "objective"
        return not self.keep_finished_checkpoints


HELDOUT_OBJECTIVES = (HELDOUT_TASK_METRIC, *LOWER_IS_BETTER, *(heldout(m) for m in TASK_METRICS))


class _Goal(_Strict):
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
        default_factory=list, description="More objectives: the sweep searches for their Pareto "
        "front (objective/benchmark_delta, cost/device_seconds, cost/peak_memory_mb, or another "
        "held-out metric).",
    )  # fmt: skip
    benchmark_weights: dict[str, float] = Field(
        default_factory=dict, description="{task: weight} of benchmark deltas in the objective."
    )
    guard: dict[str, float] = Field(
        default_factory=dict, description="{task: largest allowed drop below the base model}."
    )
    pick: Literal["knee", "first"] = Field(
        "knee", description="Which trial of the Pareto front is best: knee (closest to the ideal "
        "point, each objective scaled over the front) or first (best on the first objective).",
    )  # fmt: skip

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
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


class Tracking(_Strict):
    """Where a sweep is recorded. These defaults are the project's: the command line's
    --mlflow-uri and --state-dir read them from here (sweeps/state.py)."""

    mlflow_uri: str = Field(
        "sqlite:///mlruns/mlflow.db", description="The MLflow tracking store and model registry."
    )
    experiment: str | None = Field(None, description="MLflow experiment; defaults to the name.")
    state_dir: str = Field("mlruns/sweeps", description="One directory per sweep lives here.")
    checkpoint_storage: str | None = Field(
        None, description="Where Ray writes the trials' checkpoints and results: a path every "
        "node mounts, or a URI Ray supports (s3://, gs://, file://); default: <sweep>/ray.",
    )  # fmt: skip


class HeldoutEval(_Strict):
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)
    generation_samples: int | None = Field(
        None, ge=1, description="Held-out rows generated per rung for the task metric; None: all."
    )
    logged_generations: int = Field(8, ge=0, description="Sample generations logged per trial.")


class BenchmarksConfig(_Strict):
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


class JudgeConfig(_Strict):
    """The LLM judge of ``sweep judge`` / ``sweep compare --judge`` / ``promote.require: judge``."""

    base_url: str | None = Field(
        None, description="An OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1 from "
        "sweep serve); None: the model judges in-process.",
    )  # fmt: skip
    model: str = Field(
        description="The judge: its name at the endpoint; in-process, a base model (name or "
        "directory) or an adapter reference."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="The environment variable holding the endpoint's key "
        "(read, never logged; not needed on loopback).",
    )  # fmt: skip
    rubric: str | None = Field(
        None, description="A rubric YAML (criteria: {name: what it asks}); None: correct, "
        "specific, format, tone.",
    )  # fmt: skip
    max_tokens: int = Field(
        512, ge=1, description="Tokens the judge may write per verdict (its reasons, then the "
        "verdict line); an answer cut here has no verdict and is counted as unreadable.",
    )  # fmt: skip
    temperature: float = Field(0.0, ge=0, le=2)
    rows: int | None = Field(None, ge=1, description="Judge the first N held-out rows; None: all.")
    parallel: int = Field(4, ge=1, description="Requests at once to an endpoint.")
    timeout_s: float = Field(300.0, gt=0, description="Per request.")


EvidenceKind = Literal["heldout", "judge", "human"]


def _heldout_only() -> list[EvidenceKind]:
    return ["heldout"]


class PromoteConfig(_Strict):
    """What ``sweep promote`` requires before it moves the champion alias."""

    require: list[EvidenceKind] = Field(
        default_factory=_heldout_only, min_length=1,
        description="Evidence that must each find the candidate significantly better: heldout "
        "(paired test on every held-out row), judge (the LLM judge, both orders), human (imported "
        "ratings).",
    )  # fmt: skip


class SweepConfig(_Strict):
    """The whole sweep, as written in ``search_spaces/*.yaml``."""

    name: str = "lora-sweep"
    base_model: str = "smollm2-135m-instruct"
    trust_remote_code: bool = False
    data: DataConfig
    search_space: SearchSpace = SearchSpace()
    training: TrainingConfig = TrainingConfig()
    search: SearchConfig = SearchConfig()
    scheduler: AshaConfig | NoScheduler = Field(default_factory=AshaConfig, discriminator="type")
    resources: Resources = Resources()
    recovery: Recovery = Recovery()
    objective: Objective = Objective()
    tracking: Tracking = Tracking()
    evaluation: HeldoutEval = HeldoutEval()
    prepare: PrepareConfig | None = Field(
        None, description="Prepare data.train (and split it, unless data.heldout is set) first."
    )
    benchmarks: BenchmarksConfig = BenchmarksConfig()
    judge: JudgeConfig | None = Field(None, description="The LLM judge of A/B comparisons.")
    promote: PromoteConfig = PromoteConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_safe_name(value)

    @field_validator("base_model")
    @classmethod
    def _non_empty_model(cls, value: str) -> str:
        if not value.strip() or "\x00" in value:
            raise ValueError(
                "base_model must name an HF id, a local directory or an embedded model"
            )
        return value

    @model_validator(mode="after")
    def _cross_section_rules(self) -> SweepConfig:
        for knob in TRAINING_KNOBS:  # a dumped config (launch_config.yaml) holds the defaults
            default = TrainingConfig.model_fields[knob].get_default(call_default_factory=True)
            if (
                getattr(self.search_space, knob) is not None
                and knob in self.training.model_fields_set
                and getattr(self.training, knob) != default
            ):
                raise ValueError(f"{knob} is set in both training and search_space; keep one")
        for section in ("benchmark_weights", "guard"):
            unlisted = [
                t for t in getattr(self.objective, section) if t not in self.benchmarks.tasks
            ]
            if unlisted:
                raise ValueError(
                    f"objective.{section} names {', '.join(unlisted)}, which benchmarks.tasks "
                    "does not list"
                )
        self._cuda_only_settings()
        self._sampler_fits_the_space()
        return self

    def _sampler_fits_the_space(self) -> None:
        """grid needs finite choices; cmaes and qmc need a range to search; the TPE options
        are TPE's."""
        search = self.search
        if search.algorithm != "tpe" and (search.multivariate or search.group):
            raise ValueError(f"search.multivariate and search.group are tpe's options, not "
                             f"{search.algorithm}'s")  # fmt: skip
        if search.group and not search.multivariate:
            raise ValueError("search.group needs search.multivariate: true")
        ranges = [k for k, spec in self.search_space
                  if isinstance(spec, (LogUniform, Uniform, IntRange))]  # fmt: skip
        continuous = [(k, spec) for k, spec in self.search_space
                      if isinstance(spec, (LogUniform, Uniform))]  # fmt: skip
        if search.algorithm == "grid" and continuous:
            knob, spec = continuous[0]
            raise ValueError(f"search.algorithm grid needs finite choices, but search_space.{knob} "
                             f"is {spec.type}; use a list of values")  # fmt: skip
        if search.algorithm == "cmaes" and self.objective.also:
            raise ValueError("search.algorithm cmaes optimises one objective, and objective "
                             f"lists {1 + len(self.objective.also)}; use tpe (Optuna's "
                             "multi-objective TPE), nsga2, gp, qmc, random or grid")  # fmt: skip
        if search.algorithm in ("cmaes", "qmc") and not ranges:
            raise ValueError(f"search.algorithm {search.algorithm} searches ranges, and every "
                             "searched knob is a choice; make one a range (int, uniform, "
                             "loguniform) or use tpe")  # fmt: skip

    def _cuda_only_settings(self) -> None:
        """QLoRA, fp16 and paged optimizers run on CUDA only: refused for CPU trials up front."""
        if self.resources.gpu > 0:
            return
        training = self.training
        wanted = {"training.adapter": training.adapter == "qlora",
                  "training.precision": training.precision == "fp16",
                  "training.optimizer": training.optimizer.startswith("paged_")}  # fmt: skip
        for field, needs_cuda in wanted.items():
            if needs_cuda:
                value = getattr(training, field.split(".")[1])
                raise ValueError(
                    f"{field}: {value} needs a CUDA GPU (bitsandbytes / fp16 kernels), but "
                    "resources.gpu is 0: set resources.gpu (e.g. 1), or use adapter: lora, "
                    "precision: auto and optimizer: adamw_torch on CPU"
                )


# --------------------------------------------------------------------------- loading
def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML; raise ConfigError with one line per problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path=path, text=text)) from None


def config_from_dict(raw: dict[str, Any], *, source: str = "<config>") -> SweepConfig:
    """Validate an in-memory config (the Python API's entry)."""
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path=Path(source), text=None)) from None


def _format_errors(exc: ValidationError, *, path: Path, text: str | None) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if not _is_union_tag(part)]
        field = ".".join(loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif error["type"] == "missing":
            message = "required field is missing"
        line = _yaml_line(text, error["loc"]) if text else None
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"{where}: {field}: {message}" if loc else f"{where}: {message}")
    return "\n".join(dict.fromkeys(lines))


def _is_union_tag(part: Any) -> bool:
    tags = ("LogUniform", "Uniform", "IntRange", "Choice", "RatioOfR", "float", "int")
    return isinstance(part, str) and (
        part in tags or part.startswith(("function-", "asha", "none"))
    )


def _yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line in the YAML source of the deepest mapping key on ``loc``."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def resolve_path(value: str, *, config_dir: Path) -> Path:
    """Relative paths in a config are relative to the config file's directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (config_dir / path).resolve()
