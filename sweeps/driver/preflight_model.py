"""Preflight's checks of the base model: resolved to a local directory, its remote code and
target modules (read from the weight headers, without loading the weights), each sequence_len
candidate's GPU memory, and what each candidate truncates of the training rows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.config import Choice, ConfigError, SweepConfig
from sweeps.console import Say
from trainers.data import Example
from trainers.spec import TrialSpec

if TYPE_CHECKING:
    from trainers.models import ResolvedModel


def fit_to_memory(
    config: SweepConfig, model_path: Path, *, budget: int, source: str, progress: Say
) -> SweepConfig:
    """Estimate each sequence_len candidate's peak memory (trainers/memory.py, at the largest
    lora_r) against ``budget`` bytes: warn about those over it, or with memory_check: drop, drop
    them from the search space (refused when none fits)."""
    from sweeps.search.space import candidate_values
    from trainers.memory import GIB, estimate_memory
    from trainers.models import resolved_precision

    training = config.training
    precision = resolved_precision(training.precision, "cuda" if config.resources.gpu else "cpu")
    r = largest(config, "lora_r")
    unfit = []
    for length in sorted(int(v) for v in candidate_values(config, "sequence_len")):
        estimate = estimate_memory(
            model_path,
            r=r,
            targets=heaviest_targets(config),
            sequence_len=length,
            micro_batch=largest(config, "micro_batch_size"),
            precision=precision,
            four_bit=training.adapter == "qlora",
            optimizer=training.optimizer,
            gradient_checkpointing=training.gradient_checkpointing,
        )
        if estimate.total > budget:
            unfit.append(length)
            progress(
                f"Warning: sequence_len {length} at lora_r {r} needs about "
                f"{estimate.describe()}; the trial's GPU share has {budget / GIB:.2f} GiB"
            )
    if not unfit or config.resources.memory_check != "drop":
        return config
    return _drop_sequence_lengths(config, unfit, source=source, progress=progress)


def _drop_sequence_lengths(
    config: SweepConfig, unfit: list[int], *, source: str, progress: Say
) -> SweepConfig:
    from sweeps.config import Choice

    spec = config.search_space.sequence_len
    kept = [v for v in spec.values if int(v) not in unfit] if isinstance(spec, Choice) else []
    if not kept:
        raise ConfigError(
            f"{source}: search_space.sequence_len: no candidate fits the GPU memory (see the "
            "warnings above); lower it, lower micro_batch_size, or use gradient_checkpointing "
            "or adapter: qlora"
        )
    progress(f"Dropped sequence_len {', '.join(map(str, unfit))} (resources.memory_check: drop)")
    space = config.search_space.model_copy(
        update={"sequence_len": Choice(type="choice", values=kept)}
    )
    return config.model_copy(update={"search_space": space})


def heaviest_targets(config: SweepConfig) -> list[str]:
    """The target set with the most layers among those the sweep may use."""
    from sweeps.search.space import representative_hparams

    return list(representative_hparams(config).lora_target_modules)


def largest(config: SweepConfig, knob: str) -> int:
    from sweeps.search.space import candidate_values

    return max(int(v) for v in candidate_values(config, knob))


def gpu_share_bytes(config: SweepConfig) -> int | None:
    """The memory of the smallest visible GPU times the trial's share of one (None: no GPU)."""
    import torch

    if config.resources.gpu <= 0 or not torch.cuda.is_available():
        return None
    smallest = min(
        torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())
    )
    return int(smallest * min(config.resources.gpu, 1.0))


def check_remote_code(config: SweepConfig, model_path: Path, *, source: str) -> None:
    """A model that ships its own Python code (``auto_map``) is refused unless the YAML sets
    trust_remote_code: true; transformers would otherwise fail deep inside the first trial."""
    if config.trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        path = model_path / name
        if path.is_file() and "auto_map" in json.loads(path.read_text(encoding="utf-8")):
            raise ConfigError(
                f"{source}: trust_remote_code: base_model {config.base_model!r} ships its own "
                f"code (auto_map in {name}), which is not run unless the YAML sets "
                "trust_remote_code: true (only for code you trust)"
            )


def weight_modules(model_path: Path) -> dict[str, int]:
    """Each module that has a weight, with the weight's rank (read from the safetensors headers,
    without loading the weights)."""
    from safetensors import safe_open

    modules: dict[str, int] = {}
    for file in model_path.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                if key.endswith(".weight"):
                    modules[key.rsplit(".", 1)[0]] = len(handle.get_slice(key).get_shape())
    return modules


def linear_layer_names(model_path: Path) -> list[str]:
    """The names of the transformer blocks' linear layers (q_proj, ..., down_proj): LoRA on all
    of them ("LoRA Without Regret", 2025)."""
    return block_leaves(m for m, rank in weight_modules(model_path).items() if rank == 2)


def block_leaves(modules: Iterable[str]) -> list[str]:
    """The last names of the modules inside the transformer blocks (q_proj, ..., down_proj)."""
    return sorted({m.rsplit(".", 1)[-1] for m in modules if ".layers." in m or ".h." in m})


def check_target_modules(config: SweepConfig, model_path: Path, *, source: str) -> None:
    """Every target set (training.lora_target_modules, and each searched choice) must select
    layers of the model (read from the weight headers)."""
    from sweeps.search.space import active_specs
    from trainers.targets import split_targets, unknown_targets

    linear = [m for m, rank in weight_modules(model_path).items() if rank == 2]
    if not linear:
        return
    spec = active_specs(config)["lora_target_modules"]
    sets = [str(v) for v in spec.values] if isinstance(spec, Choice) else [str(spec)]
    where = "search_space" if config.search_space.lora_target_modules is not None else "training"
    for targets in sets:
        missing = unknown_targets(split_targets(targets), linear)
        if missing:
            raise ConfigError(
                f"{source}: {where}.lora_target_modules: {', '.join(missing)} selects no layer "
                f"of {config.base_model}; use all-linear, attention, or names among "
                f"{', '.join(block_leaves(linear))}"
            )


def check_truncation(
    config: SweepConfig, spec: TrialSpec, train: list[Example], *, source: str, progress: Say
) -> list[int]:
    """Tokenize the training rows once; say what each sequence_len candidate truncates. Returns
    each row's length in tokens (the time estimate reads it)."""
    from sweeps.search.space import candidate_values
    from trainers.models import load_tokenizer
    from trainers.tokenize import resolve_template, tokenize_examples, truncate

    tokenizer = load_tokenizer(Path(spec.model_path), trust_remote_code=spec.trust_remote_code)
    tokenized = tokenize_examples(train, tokenizer, resolve_template(tokenizer, spec.data.template))
    for length in (int(v) for v in candidate_values(config, "sequence_len")):
        kept, stats = truncate(tokenized, length)
        if not kept:
            raise ConfigError(
                f"{source}: search_space.sequence_len: {length} tokens cuts away the "
                f"response of every training row (longest row: {max(map(len, tokenized))})"
            )
        progress(
            f"sequence_len {length}: {stats.truncated} of {stats.total} training rows truncated, "
            f"{stats.dropped} dropped (no response left)"
        )
    return [len(t) for t in tokenized]


def check_model(
    config: SweepConfig, *, source: str, progress: Say
) -> tuple[SweepConfig, ResolvedModel]:
    """The base model, resolved to a local directory; its remote code and target modules
    checked; the config fitted to the GPU's memory when it has to be."""
    from trainers.models import ModelError, resolve_base_model

    try:
        model = resolve_base_model(config.base_model, progress=progress)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    check_remote_code(config, model.path, source=source)
    check_target_modules(config, model.path, source=source)
    budget = gpu_share_bytes(config) if config.resources.memory_check != "off" else None
    if budget is not None:
        config = fit_to_memory(config, model.path, budget=budget, source=source, progress=progress)
    return config, model
