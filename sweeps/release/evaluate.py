"""``sweep eval``: score any model (optionally with a LoRA adapter) on lm-eval tasks, outside a
sweep, and log it as its own MLflow run.

Task names and benchmark data are checked before the model is loaded; the model is loaded once
and scored on every task.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evals.metric_keys import FULL, PROXY, bench_metrics, phase_seconds
from sweeps.tracking.provenance import provenance_tags
from sweeps.tracking.state import DEFAULT_MLFLOW_URI

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from evals.benchmark_scores import BenchmarkScores

DEFAULT_TASKS = ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")
EVAL_EXPERIMENT = "lora-sweep-evals"  # the MLflow experiment `sweep eval` logs to


@dataclass
class EvalOutcome:
    run_id: str
    metrics: dict[str, float]
    seconds: float


def evaluate_model(
    model: str,
    *,
    adapter: Path | None = None,
    tasks: list[str],
    mirror: str | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 16,
    mlflow_uri: str = DEFAULT_MLFLOW_URI,
    experiment: str = EVAL_EXPERIMENT,
    trust_remote_code: bool = False,
) -> EvalOutcome:
    """Check tasks and data, load the model (+ adapter) once, score it, log one MLflow run."""
    from evals.benchmark_sources import mirror_directory
    from evals.benchmarks import check_data, check_tasks, score_benchmarks, task_manager
    from trainers.models import cache_root, resolve_base_model

    mirror_dir = mirror_directory(mirror)
    manager = task_manager(mirror=mirror_dir, include_path=None, cache=cache_root())
    check_tasks(tasks, manager)
    check_data(tasks, manager, mirror=mirror_dir)
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        from sweeps.config import ConfigError

        raise ConfigError(f"--adapter {adapter}: no adapter_config.json (not a PEFT adapter)")
    resolved = resolve_base_model(model)
    loaded, tokenizer = _load(resolved.path, adapter, trust_remote_code=trust_remote_code)
    started = time.perf_counter()
    scores = score_benchmarks(
        loaded,
        tokenizer,
        tasks=tasks,
        batch_size=batch_size,
        manager=manager,
        num_fewshot=num_fewshot,
        limit=limit,
    )
    seconds = time.perf_counter() - started
    phase = FULL if limit is None else PROXY  # a limit scores a subset: a proxy
    metrics = {**bench_metrics(phase, scores.metrics), phase_seconds(phase): seconds}
    run_id = _log(
        scores,
        metrics,
        model=model,
        adapter=adapter,
        mirror=mirror_dir,
        mlflow_uri=mlflow_uri,
        experiment=experiment,
    )
    return EvalOutcome(run_id=run_id, metrics=metrics, seconds=seconds)


def _load(
    path: Path, adapter: Path | None, *, trust_remote_code: bool
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    from trainers.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    model = load_causal_lm(path, trust_remote_code=trust_remote_code)
    if adapter is None:
        return model.eval(), tokenizer
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).eval(), tokenizer


def _log(
    scores: BenchmarkScores,
    metrics: dict[str, float],
    *,
    model: str,
    adapter: Path | None,
    mirror: Path | None,
    mlflow_uri: str,
    experiment: str,
) -> str:
    from sweeps.tracking.mlflow_facade import SweepTracker

    name = f"eval/{Path(model).name}" + (f"+{adapter.name}" if adapter else "")
    params = {
        "model": model,
        "adapter": str(adapter) if adapter else "none",
        "mirror": str(mirror) if mirror else "hub",
        **{f"eval.{k}": v for k, v in scores.config.items() if k != "versions"},
    }
    tags = {"lora_sweep.kind": "eval", **provenance_tags(seeds={}, digests={})}
    artifacts = {"eval_config.json": json.dumps(scores.config, indent=2, default=str)}
    for task, rows in scores.samples.items():
        artifacts[f"samples/{task}.jsonl"] = "".join(
            json.dumps(r, default=str) + "\n" for r in rows
        )
    return SweepTracker(mlflow_uri, experiment).log_run(
        name, params=params, metrics=metrics, tags=tags, artifacts=artifacts
    )
