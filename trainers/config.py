"""The trainer's sections of the sweep YAML: the data, the training settings every trial shares,
and one trial's :class:`Hyperparameters`.

It imports nothing from sweeps/ (``sweeps/config`` puts these sections together with the
others into ``SweepConfig``), and no torch. A knob is searchable when it is a field of
:class:`Hyperparameters`: ``sweeps/config/search_space.py`` derives its ``search_space`` entry
from the field (its type, its bounds, its ``Search`` default), the trainable builds the trial's
``Hyperparameters`` from Ray's config, and the trainer reads its attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from evals.config import Section
from trainers.targets import split_targets

# The domains of the knobs, each written once: TrainingConfig's fixed values and the trial's
# Hyperparameters share them, and the search space checks every value it can yield against them.
Count = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
NonNegative = Annotated[float, Field(ge=0)]

DataFormat = Literal[
    "auto",
    "alpaca",
    "dolly",
    "instruction_response",
    "question_answer",
    "prompt_completion",
    "prompt_response",
    "input_output",
    "text_label",
    "hash_pairs",
    "text",
    "chat",
]
# Too little data (refused unless data.allow_small; docs/data.md "Too little data" says why).
MIN_TRAIN_ROWS = 32
MIN_HELDOUT_ROWS = 20


class DataConfig(Section):
    train: str = Field(description="Training file: .jsonl, .json, .csv, .parquet or .txt.")
    heldout: str | None = Field(None, description="Held-out file; else split off val_set_size.")
    val_set_size: float = Field(0.1, gt=0, lt=1, description="Held-out fraction when no file.")
    format: DataFormat = Field("auto", description="auto: the shape of the first row's keys.")
    template: Literal["auto", "chat", "alpaca", "plain"] = Field(
        "auto", description="auto: the model's chat template when it has one, else alpaca."
    )
    system_prompt: str | None = None
    instruction: str | None = Field(
        None,
        description="text+label rows: the instruction the label answers (default: 'What "
        "is the <label column> of this text?').",
    )
    label_field: str | None = Field(
        None,
        description="Your label column: for text rows the label is the response; for any "
        "shape it stratifies the split.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Rename columns: {our_name: your_column}."
    )
    split_seed: int = 0
    task_metric: Literal["auto", "exact_match", "field_f1", "rouge_l"] = "auto"
    allow_contaminated: bool = Field(
        False,
        description="Launch even if training rows share 13-grams with held-out or "
        "benchmark items (refused otherwise).",
    )
    allow_small: bool = Field(
        False,
        description=f"Launch with fewer than {MIN_TRAIN_ROWS} training or "
        f"{MIN_HELDOUT_ROWS} held-out rows (refused otherwise: too few to rank trials).",
    )

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        from trainers.data_shapes import KNOWN_COLUMNS

        for key in value:
            if key not in KNOWN_COLUMNS:
                raise ValueError(f"unknown column {key!r}; known: {', '.join(KNOWN_COLUMNS)}")
        return value


InitLoraWeights = Literal["default", "gaussian", "pissa", "olora"]  # PEFT's, True as "default"
BASE_REWRITING_INITS = ("pissa", "olora")  # they move the top of each base weight into the adapter


class TrainingConfig(Section):
    """Knobs every trial shares (Axolotl names)."""

    micro_batch_size: Count = 4
    gradient_accumulation_steps: Count = 1
    warmup_ratio: Fraction = 0.1
    optimizer: Literal["adamw_torch", "adamw", "sgd", "paged_adamw_8bit", "paged_adamw_32bit"] = (
        "adamw_torch"
    )
    adapter: Literal["lora", "qlora"] = Field(
        "lora",
        description="qlora: the base model in 4-bit NF4 (bitsandbytes, double "
        "quantisation, bf16 compute); needs a CUDA GPU.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Base weights and autocast: auto = bf16 on a GPU that has it, else "
        "fp32; fp16 (with loss scaling) needs a CUDA GPU. LoRA weights stay fp32.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, ~30% slower."
    )
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: NonNegative = 0.0
    lora_dropout: Fraction = 0.05
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="all-linear (every linear layer of the blocks: perf/lora_curves.csv's "
        "evidence), attention, or module names.",
    )
    use_rslora: bool = Field(
        False, description="Rank-stabilised LoRA: scale by alpha/sqrt(r), not alpha/r."
    )
    use_dora: bool = Field(
        False,
        description="DoRA: each adapted layer also trains a magnitude vector (PEFT's "
        "lora_magnitude_vector); better at low r, slower steps.",
    )
    init_lora_weights: InitLoraWeights = Field(
        "default",
        description="default: A random, B zero; gaussian: A ~ N(0, 1/r); pissa / "
        "olora: A and B from each weight's SVD / QR, the base keeps the rest (adapter: lora, no "
        "DoRA; saved as a plain LoRA of rank 2r).",
    )
    loraplus_lr_ratio: float | None = Field(
        None,
        ge=1,
        description="LoRA+: the B matrices learn at this multiple of learning_rate "
        "(the A matrices'); None: one learning rate.",
    )
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


@dataclass(frozen=True)
class Search:
    """How ``search_space`` may set a knob: metadata on a :class:`Hyperparameters` field.

    ``default`` is what a sweep searches when its YAML leaves the knob out, written as the YAML
    would write it (a range mapping, a list of choices, a fixed value); None: the knob's value
    comes from the field's default, or from ``training:`` when TrainingConfig has the knob.
    """

    default: object = None
    ratio_of_r: bool = False  # the value may be a multiple of lora_r (``ratio_of_r``)
    target_sets: bool = False  # each value is a set of modules: "all-linear", "q_proj,v_proj"


def _module_names(value: object) -> object:
    """A searched target set ("q_proj,v_proj") or a YAML list, as a tuple of module names."""
    if isinstance(value, str) or (isinstance(value, Sequence) and not isinstance(value, bytes)):
        return tuple(split_targets(value if isinstance(value, str) else [str(v) for v in value]))
    return value


class Hyperparameters(BaseModel):
    """One trial's knobs, as the trainer reads them; every field is a knob ``search_space`` may
    search. Ray's flat config becomes this once, at the trainable's boundary
    (:meth:`from_trial`), and the Python API's ``run_trial`` goes the same way."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    learning_rate: Annotated[
        float, Field(gt=0), Search({"type": "loguniform", "low": 1e-4, "high": 1e-3})
    ]
    lora_r: Annotated[int, Field(ge=1), Search([8, 16])]
    lora_alpha: Annotated[
        float, Field(gt=0), Search({"type": "ratio_of_r", "values": [2.0]}, ratio_of_r=True)
    ]
    num_epochs: Count = 1
    sequence_len: Count = 512
    lora_dropout: Fraction
    weight_decay: NonNegative
    warmup_ratio: Fraction
    micro_batch_size: Count
    gradient_accumulation_steps: Count
    lora_target_modules: Annotated[
        tuple[str, ...], BeforeValidator(_module_names), Search(target_sets=True)
    ]

    @classmethod
    def from_trial(
        cls, values: Mapping[str, object], *, training: TrainingConfig
    ) -> Hyperparameters:
        """A trial's knobs from the flat dict Ray (or ``run_trial``) hands it. A knob the dict
        lacks (a trial of a sweep launched before the knob was searchable) keeps training's
        value; keys that are not knobs (Optuna's ``lora_alpha_ratio``) are left out."""
        fixed = {k: getattr(training, k) for k in TRAINING_KNOBS}
        given = {k: values[k] for k in cls.model_fields if k in values}
        return cls.model_validate({**fixed, **given})

    def training_values(self) -> dict[str, object]:
        """The knobs TrainingConfig also holds, as its fields take them (target sets as lists)."""
        values = self.model_dump(mode="json", include=set(TRAINING_KNOBS))
        return dict(values)


# Knobs with a fixed value in training: that value, unless search_space searches them
TRAINING_KNOBS = tuple(k for k in Hyperparameters.model_fields if k in TrainingConfig.model_fields)
