"""``SweepConfig``: the whole sweep YAML, its sections put together, and the rules that tie two
sections."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from evals.config import BenchmarksConfig, HeldoutEval, Objective, Section
from sweeps.config import sections
from sweeps.config.checks import check_safe_name
from sweeps.config.search_space import IntRange, LogUniform, SearchSpace, Uniform
from trainers.config import TRAINING_KNOBS, DataConfig, TrainingConfig


class SweepConfig(Section):
    """The whole sweep, as written in ``search_spaces/*.yaml``."""

    name: str = "lora-sweep"
    base_model: str = "smollm2-135m-instruct"
    trust_remote_code: bool = False
    data: DataConfig
    search_space: SearchSpace = SearchSpace()
    training: TrainingConfig = TrainingConfig()
    search: sections.SearchConfig = sections.SearchConfig()
    scheduler: sections.AshaConfig | sections.NoScheduler = Field(
        default_factory=sections.AshaConfig, discriminator="type"
    )
    resources: sections.Resources = sections.Resources()
    recovery: sections.Recovery = sections.Recovery()
    objective: Objective = Objective()
    tracking: sections.Tracking = sections.Tracking()
    evaluation: HeldoutEval = HeldoutEval()
    prepare: sections.PrepareConfig | None = Field(
        None, description="Prepare data.train (and split it, unless data.heldout is set) first."
    )
    benchmarks: BenchmarksConfig = BenchmarksConfig()
    judge: sections.JudgeConfig | None = Field(
        None, description="The LLM judge of A/B comparisons."
    )
    promote: sections.PromoteConfig = sections.PromoteConfig()

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
            raise ValueError(
                f"search.multivariate and search.group are tpe's options, not {search.algorithm}'s"
            )
        if search.group and not search.multivariate:
            raise ValueError("search.group needs search.multivariate: true")
        ranges = [
            k for k, spec in self.search_space if isinstance(spec, (LogUniform, Uniform, IntRange))
        ]
        continuous = [
            (k, spec) for k, spec in self.search_space if isinstance(spec, (LogUniform, Uniform))
        ]
        if search.algorithm == "grid" and continuous:
            knob, spec = continuous[0]
            raise ValueError(
                f"search.algorithm grid needs finite choices, but search_space.{knob} "
                f"is {spec.type}; use a list of values"
            )
        if search.algorithm == "cmaes" and self.objective.also:
            raise ValueError(
                "search.algorithm cmaes optimises one objective, and objective "
                f"lists {1 + len(self.objective.also)}; use tpe (Optuna's "
                "multi-objective TPE), nsga2, gp, qmc, random or grid"
            )
        if search.algorithm in ("cmaes", "qmc") and not ranges:
            raise ValueError(
                f"search.algorithm {search.algorithm} searches ranges, and every "
                "searched knob is a choice; make one a range (int, uniform, "
                "loguniform) or use tpe"
            )

    def _cuda_only_settings(self) -> None:
        """QLoRA, fp16 and paged optimizers run on CUDA only: refused for CPU trials up front."""
        if self.resources.gpu > 0:
            return
        training = self.training
        wanted = {
            "training.adapter": training.adapter == "qlora",
            "training.precision": training.precision == "fp16",
            "training.optimizer": training.optimizer.startswith("paged_"),
        }
        for field, needs_cuda in wanted.items():
            if needs_cuda:
                value = getattr(training, field.split(".")[1])
                raise ValueError(
                    f"{field}: {value} needs a CUDA GPU (bitsandbytes / fp16 kernels), but "
                    "resources.gpu is 0: set resources.gpu (e.g. 1), or use adapter: lora, "
                    "precision: auto and optimizer: adamw_torch on CPU"
                )
