"""The command line's options: one pydantic model per verb, a description per field (its help).
Each field becomes one argument of its verb (``sweeps/cli/arguments.py`` says how; a field's
``json_schema_extra`` can make it positional, rename its flag or set its metavar: ``POSITIONAL``).
Defaults live here (or in the YAML schema, where a sweep YAML sets the same thing), and the help
shows them (``sweeps.cli.main.HelpFormatter``).

This module imports no torch, ray or mlflow: ``sweep --help`` builds every verb's flags.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from sweeps.config import BenchmarksConfig, DataConfig, EvidenceKind, SweepConfig
from sweeps.prepare import PrepareOptions
from sweeps.release.evaluate import DEFAULT_TASKS, EVAL_EXPERIMENT
from sweeps.serving.serve import SERVE_PORT
from sweeps.serving.serve_limits import ServeLimits
from sweeps.tracking.state import DEFAULT_MLFLOW_URI, DEFAULT_STATE_DIR
from sweeps.tracking.ui import DASHBOARD_PORT, LOOPBACK, UI_PORT
from sweeps.tune.options import RayOptions

POSITIONAL: JsonDict = {"positional": True}


# --------------------------------------------------------------------------- shared options
class VerbOptions(BaseModel):
    """A verb's options: each field one argument of ``sweep VERB``, its description the help."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StateDirOption(VerbOptions):
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="where sweep directories live")


class SweepOption(StateDirOption):
    sweep: str = Field(
        description="the sweep's name (launch prints it), or its directory",
        json_schema_extra=POSITIONAL,
    )


class MlflowOption(VerbOptions):
    mlflow_uri: str = Field(DEFAULT_MLFLOW_URI, description="the tracking store and registry")


class Store(TypedDict):
    """Where a reference to an adapter resolves, as the keywords the functions resolving one take
    (``resolve_adapter(ref, **options.store())``)."""

    state_dir: Path
    mlflow_uri: str


class StoreOptions(StateDirOption, MlflowOption):
    """The sweeps' directories and the MLflow store: where a reference to an adapter resolves."""

    def store(self) -> Store:
        return Store(state_dir=self.state_dir, mlflow_uri=self.mlflow_uri)


class ServerOptions(VerbOptions):
    host: str = Field(LOOPBACK, description="0.0.0.0 exposes it to the network")


ADAPTER_REFS = (
    "champion, NAME@ALIAS, models:/NAME/VERSION, SWEEP (its best trial), SWEEP/TRIAL, "
    "a run id, or an adapter directory"
)


# --------------------------------------------------------------------------- one model per verb
class InitOptions(VerbOptions):
    data: Path = Field(
        description="your training data: jsonl, json, csv, parquet or txt",
        json_schema_extra=POSITIONAL,
    )
    heldout: Path | None = Field(None, description="your held-out file (default: split off DATA)")
    model: str = Field(
        SweepConfig.model_fields["base_model"].default,
        description="base model: an HF id, a local directory, or smollm2-135m-instruct",
    )
    budget: str = Field("30m", description="wall time to size the sweep to, e.g. 30m, 2h")
    out: Path | None = Field(
        None, description="the YAML to write (default: search_spaces/NAME.yaml)"
    )
    name: str | None = Field(
        None, description="sweep and experiment name (default: from the data file)"
    )
    instruction: str | None = Field(
        None, description=DataConfig.model_fields["instruction"].description
    )
    system_prompt: str | None = Field(
        None, description="a system prompt for every example (default: none)"
    )


class ConfigOption(VerbOptions):
    config: Path = Field(
        description="sweep YAML, e.g. search_spaces/lora.yaml", json_schema_extra=POSITIONAL
    )


class ValidateOptions(ConfigOption):
    quick: bool = Field(
        False,
        description="the schema only: no data, model or timing (imports no torch; "
        "default: the full dry run)",
    )
    num_gpus: int | None = Field(
        None, description="as for launch: logical GPUs for a local Ray (default: those CUDA sees)"
    )


class LaunchOptions(ConfigOption, RayOptions):
    name: str | None = Field(None, description="sweep name (default: <config name>-<timestamp>)")
    state_dir: Path | None = Field(
        None,
        description="where sweep directories live (default: the YAML's tracking.state_dir, "
        f"else {DEFAULT_STATE_DIR})",
    )


class ResumeOptions(SweepOption, RayOptions):
    pass


class RerunOptions(SweepOption, RayOptions):
    failed: bool = Field(
        False,
        description="run the sweep's failed trials again, in the same sweep and study "
        "(what to re-run: required)",
    )


class StatusOptions(SweepOption):
    pass


class BestOptions(SweepOption):
    as_json: bool = Field(
        False,
        description="machine-readable output (default: text)",
        json_schema_extra={"flag": "--json"},
    )


class EvalOptions(MlflowOption):
    model: str = Field(
        description="an HF id, a local directory, or smollm2-135m-instruct",
        json_schema_extra=POSITIONAL,
    )
    adapter: Path | None = Field(
        None, description="a PEFT adapter directory to apply (default: none, the base model)"
    )
    tasks: tuple[str, ...] = Field(
        DEFAULT_TASKS,
        description="comma-separated lm-eval task names (any lm-eval task works)",
    )
    mirror: str | None = Field(
        None,
        description="local benchmark mirror (default: $LORA_SWEEP_BENCHMARK_MIRROR, else "
        "the Hugging Face Hub)",
    )
    limit: int | None = Field(None, description="documents per task, a proxy (default: full sets)")
    num_fewshot: int | None = Field(
        None, ge=0, description="few-shot examples (default: each task's own)"
    )
    batch_size: int = Field(
        BenchmarksConfig.model_fields["batch_size"].default,
        ge=1,
        description="pinned: scores shift with it",
    )
    experiment: str = Field(EVAL_EXPERIMENT, description="the MLflow experiment")


class ExportOptions(StoreOptions):
    ref: str = Field(description=f"the adapter: {ADAPTER_REFS}", json_schema_extra=POSITIONAL)
    merged: Path = Field(description="new directory for the merged model")
    base: str | None = Field(None, description="base model (default: the one the adapter records)")


class JudgeFlags(VerbOptions):
    """Which LLM judges: the sweep YAML's judge: section, or these (which override it)."""

    judge_url: str | None = Field(
        None,
        description="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 from "
        "sweep serve (default: judge.base_url; none: the judge model runs in-process)",
    )
    judge_model: str | None = Field(
        None,
        description="the judge model: its name at the endpoint, or in-process a base model "
        "or adapter reference (default: judge.model)",
    )
    judge_key_env: str | None = Field(
        None,
        description="the environment variable holding the endpoint's key; its value is "
        "never printed (default: judge.api_key_env, OPENAI_API_KEY)",
    )
    rubric: Path | None = Field(
        None,
        description="a rubric YAML, criteria: {name: what it asks} (default: judge.rubric, "
        "else correct, specific, format, tone)",
    )
    judge_rows: int | None = Field(
        None,
        ge=1,
        description="judge only the first N held-out rows, to try a judge cheaply "
        "(default: judge.rows, else every row)",
    )

    def overrides(self) -> dict[str, object]:
        """The flags, as the fields of the ``judge:`` section they override (None: not given)."""
        return {
            "base_url": self.judge_url,
            "model": self.judge_model,
            "api_key_env": self.judge_key_env,
            "rubric": str(self.rubric) if self.rubric else None,
            "rows": self.judge_rows,
        }


class PromoteOptions(StateDirOption, JudgeFlags):
    ref: str = Field(
        description="SWEEP (its best trial), SWEEP/TRIAL, or a trial's run id",
        json_schema_extra=POSITIONAL,
    )
    model_name: str | None = Field(
        None, description="registered model (default: the sweep config's name)"
    )
    force: str | None = Field(
        None,
        description="promote even if the gate refuses; the reason is recorded as a tag "
        "(default: the gate decides)",
        json_schema_extra={"metavar": "REASON"},
    )
    mlflow_uri: str | None = Field(
        None, description="the registry (default: the sweep's tracking store)"
    )
    require: tuple[EvidenceKind, ...] = Field(
        (),
        description="the evidence that must each find the candidate significantly better: "
        "heldout,judge,human (default: the sweep YAML's promote.require, else heldout)",
    )


class CompareOptions(StoreOptions, JudgeFlags):
    a: str = Field(description=f"the candidate: base, {ADAPTER_REFS}", json_schema_extra=POSITIONAL)
    b: str = Field(
        description="the reference, as for A (e.g. base or champion)", json_schema_extra=POSITIONAL
    )
    out: Path | None = Field(None, description="report directory (default: reports/A-vs-B)")
    samples: int = Field(8, description="generations shown side by side")
    judge: bool = Field(
        False,
        description="ask the LLM judge about every row too (both orders, cached) and "
        "report it (stored judge or human evidence on the pair is reported either way)",
    )


class JudgeOptions(StoreOptions, JudgeFlags):
    refs: tuple[str, ...] = Field(
        description=f"two or more sides, the first as A: base, {ADAPTER_REFS}",
        json_schema_extra=POSITIONAL,
    )


class ErrorsOptions(StoreOptions):
    ref: str = Field(
        description=f"an adapter from a sweep: {ADAPTER_REFS}", json_schema_extra=POSITIONAL
    )
    out: Path | None = Field(None, description="output directory (default: reports/errors-REF)")


class HumanExportOptions(StoreOptions):
    a: str = Field(description=f"the candidate: base, {ADAPTER_REFS}", json_schema_extra=POSITIONAL)
    b: str = Field(description="the reference, as for A", json_schema_extra=POSITIONAL)
    out: Path = Field(description="new directory: rater/ (to share), key.json (to keep), ratings/")


class HumanImportOptions(StoreOptions):
    directory: Path = Field(
        description="the directory sweep human export wrote, its ratings in ratings/",
        json_schema_extra=POSITIONAL,
    )


class ServeOptions(StoreOptions, ServerOptions):
    refs: tuple[str, ...] = Field(
        description=f"what to serve, each [NAME=]REF: base, {ADAPTER_REFS}",
        json_schema_extra=POSITIONAL,
    )
    port: int = Field(SERVE_PORT, description="the port to listen on")
    base_model: str | None = Field(
        None,
        description="the base model, name or directory (default: the adapters' own; "
        "needed to serve base alone)",
    )
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="auto: vLLM where a CUDA GPU and vLLM exist, else transformers"
    )
    api_key_env: str | None = Field(
        None,
        description="require Authorization: Bearer with this environment variable's value "
        "(default: no key; loopback only)",
    )
    max_tokens: int = Field(
        ServeLimits.max_tokens, ge=1, description="the most tokens one answer may have"
    )
    context_tokens: int | None = Field(
        ServeLimits.context_tokens,
        ge=1,
        description="the tokens a prompt and its answer may "
        "have together (default: the model's max_position_embeddings), like vLLM's --max-model-len",
    )
    max_prompt_tokens: int | None = Field(
        ServeLimits.max_prompt_tokens,
        ge=1,
        description="the longest prompt, in tokens (default: "
        "the context); a longer one is refused at once (400 context_length_exceeded)",
    )
    request_timeout: float = Field(
        ServeLimits.request_timeout,
        gt=0,
        description="seconds from a request's arrival to its "
        "answer, its wait in the queue included; past them it gets a 504",
    )
    max_queue: int = Field(
        ServeLimits.max_queue,
        ge=0,
        description="requests that may wait behind the one being "
        "answered (one at a time); more get a 429 with Retry-After",
    )
    max_body_mb: float = Field(
        ServeLimits.max_body_mb,
        gt=0,
        description="a request body past this many MB is refused (413) before it is read",
    )

    def limits(self) -> ServeLimits:
        """The flags of ServeLimits' fields, as one (each flag is named after its field)."""
        return ServeLimits(**{f.name: getattr(self, f.name) for f in fields(ServeLimits)})


class DataPrepareOptions(PrepareOptions):
    """``sweep data prepare``: PrepareOptions, whose fields are the step switches of a sweep
    YAML's prepare: section and their inputs, or that YAML itself."""

    config: Path | None = Field(
        None,
        description="a sweep YAML: its data files, with its prepare: section (the other "
        "flags are for files given directly; default: give files)",
    )


class UiOptions(MlflowOption, ServerOptions):
    port: int = Field(UI_PORT, description="the port to listen on")


class DashboardOptions(SweepOption, ServerOptions):
    port: int = Field(DASHBOARD_PORT, description="the port to listen on")
