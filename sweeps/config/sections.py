"""The driver's sections of the sweep YAML: preparation, search, scheduler, resources, recovery,
tracking, the LLM judge and promotion (the trainer's and the evaluation's live beside their code:
trainers/config.py, evals/config.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from evals.config import Section


class PrepareConfig(Section):
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
        True,
        description="Drop training rows sharing an n-gram with a held-out row or a "
        "benchmark (benchmarks.tasks in a sweep YAML).",
    )
    quality: bool = Field(True, description="Flag short/empty responses, echoes, too long rows.")
    min_response_chars: int | None = Field(
        None,
        ge=0,
        description="Flag responses shorter than N characters (default: decided "
        "from the data; none when answers are short: labels, numbers, letters).",
        json_schema_extra={"metavar": "N"},
    )
    check_seq_len: bool = Field(
        True,
        description="Flag rows longer than max_seq_len tokens (sweep launch: the largest "
        "sequence_len, measured with base_model's tokenizer).",
    )
    drop_flagged: bool = Field(
        True,
        description="Drop the rows the quality step flags, and count them (--keep-flagged "
        "or false: report them only).",
        json_schema_extra={"negative_flag": "--keep-flagged"},
    )


class SearchConfig(Section):
    algorithm: Literal["tpe", "random", "grid", "gp", "cmaes", "qmc", "nsga2"] = Field(
        "tpe",
        description="The Optuna sampler: tpe, random, grid, gp (Gaussian process), cmaes "
        "and qmc (they search the ranges; choices are sampled at random), nsga2.",
    )
    multivariate: bool = Field(
        False, description="tpe: model the knobs jointly (Optuna's multivariate TPE)."
    )
    group: bool = Field(
        False, description="tpe with multivariate: model the knobs that appear together as groups."
    )
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    storage: str | None = Field(
        None,
        description="The Optuna study's database URL, e.g. postgresql://user@host/optuna "
        "for a cluster (pip install -e '.[cluster]'); default: sqlite in the sweep's directory.",
    )
    seed: int = 0
    warm_start: str | None = Field(
        None,
        description="A prior sweep (its name in tracking.state_dir, or its directory): "
        "its finished trials that fit this space seed the new study (same objective).",
    )


class AshaConfig(Section):
    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, description="Rungs every trial runs before it can stop.")
    reduction_factor: float = Field(2.0, gt=1)


class NoScheduler(Section):
    type: Literal["none"]


class Resources(Section):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    memory_check: Literal["warn", "drop", "off"] = Field(
        "warn",
        description="Before launch, estimate each sequence_len's peak GPU memory (at the "
        "largest lora_r): warn about those over the GPU share, or drop them from the search.",
    )

    @field_validator("gpu")
    @classmethod
    def _whole_if_above_one(cls, value: float) -> float:
        if value > 1 and not value.is_integer():
            raise ValueError(
                f"a fraction of a GPU must be <= 1; above 1 use whole GPUs, got {value}"
            )
        return value


class Recovery(Section):
    """What a fault may cost: restarts of a killed trial, and the checkpoints kept per trial."""

    max_retries: int = Field(
        1,
        ge=0,
        description="Restarts of a killed or crashed trial, each from its newest intact "
        "checkpoint; 0 = a killed trial fails at once.",
    )
    keep_checkpoints: int = Field(
        2,
        ge=1,
        description="Checkpoints kept per trial, the latest always among them (with 2 or "
        "more, a damaged latest falls back to an older one instead of failing).",
    )
    keep_best_by: Literal["latest", "objective"] = Field(
        "latest",
        description="latest: the most recent; objective: the best by the sweep's "
        "objective (plus the latest, which restarts need).",
    )
    keep_finished_checkpoints: bool | None = Field(
        None,
        description="Keep the checkpoints of a trial that completed or was stopped early; "
        "by default they are removed when it ends (its last adapter stays in adapters/<trial>; a "
        "failed trial keeps them, for resume). Unset: kept only with keep_best_by: objective.",
    )

    @property
    def removes_finished_checkpoints(self) -> bool:
        """Whether a trial's checkpoints go when it completes or is stopped early."""
        if self.keep_finished_checkpoints is None:
            return self.keep_best_by != "objective"
        return not self.keep_finished_checkpoints


class Tracking(Section):
    """Where a sweep is recorded. These defaults are the project's: the command line's
    --mlflow-uri and --state-dir read them from here (sweeps/tracking/state.py)."""

    mlflow_uri: str = Field(
        "sqlite:///mlruns/mlflow.db", description="The MLflow tracking store and model registry."
    )
    experiment: str | None = Field(None, description="MLflow experiment; defaults to the name.")
    state_dir: str = Field("mlruns/sweeps", description="One directory per sweep lives here.")
    checkpoint_storage: str | None = Field(
        None,
        description="Where Ray writes the trials' checkpoints and results: a path every "
        "node mounts, or a URI Ray supports (s3://, gs://, file://); default: <sweep>/ray.",
    )


class JudgeConfig(Section):
    """The LLM judge of ``sweep judge`` / ``sweep compare --judge`` / ``promote.require: judge``."""

    base_url: str | None = Field(
        None,
        description="An OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1 from "
        "sweep serve); None: the model judges in-process.",
    )
    model: str = Field(
        description="The judge: its name at the endpoint; in-process, a base model (name or "
        "directory) or an adapter reference."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="The environment variable holding the endpoint's key "
        "(read, never logged; not needed on loopback).",
    )
    rubric: str | None = Field(
        None,
        description="A rubric YAML (criteria: {name: what it asks}); None: correct, "
        "specific, format, tone.",
    )
    max_tokens: int = Field(
        512,
        ge=1,
        description="Tokens the judge may write per verdict (its reasons, then the "
        "verdict line); an answer cut here has no verdict and is counted as unreadable.",
    )
    temperature: float = Field(0.0, ge=0, le=2)
    rows: int | None = Field(None, ge=1, description="Judge the first N held-out rows; None: all.")
    parallel: int = Field(4, ge=1, description="Requests at once to an endpoint.")
    timeout_s: float = Field(300.0, gt=0, description="Per request.")


EvidenceKind = Literal["heldout", "judge", "human"]


def _heldout_only() -> list[EvidenceKind]:
    return ["heldout"]


class PromoteConfig(Section):
    """What ``sweep promote`` requires before it moves the champion alias."""

    require: list[EvidenceKind] = Field(
        default_factory=_heldout_only,
        min_length=1,
        description="Evidence that must each find the candidate significantly better: heldout "
        "(paired test on every held-out row), judge (the LLM judge, both orders), human (imported "
        "ratings).",
    )
