"""The pre-launch memory estimate: exact parameter counts, and the terms moving the right way."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from sweeps.config import Choice, ConfigError, SweepConfig, config_from_dict
from sweeps.driver.preflight_model import fit_to_memory
from trainers.memory import (
    OVERHEAD,
    MemoryEstimate,
    estimate_memory,
    lora_parameters,
    weight_shapes,
)


def estimate(model: Path, **overrides: Any) -> MemoryEstimate:
    settings: dict[str, Any] = {"r": 8, "targets": ["q_proj", "v_proj"], "sequence_len": 256,
                                "micro_batch": 4, "precision": "bf16", **overrides}  # fmt: skip
    return estimate_memory(model, **settings)


def test_parameter_counts_match_the_loaded_model_and_peft(tiny_model: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    shapes = weight_shapes(tiny_model)
    assert sum(math.prod(shape) for shape in shapes.values()) == model.num_parameters()
    assert estimate(tiny_model, precision="fp32").weights == 4 * model.num_parameters()
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert lora_parameters(shapes, r=4, targets=["q_proj", "v_proj"]) == trainable


def test_each_term_moves_the_way_memory_does(tiny_model: Path) -> None:
    base = estimate(tiny_model)
    assert estimate(tiny_model, four_bit=True).weights < base.weights
    assert estimate(tiny_model, precision="fp32").weights == 2 * base.weights
    doubled = estimate(tiny_model, sequence_len=512)
    assert (doubled.activations, doubled.logits) == (2 * base.activations, 2 * base.logits)
    assert estimate(tiny_model, gradient_checkpointing=True).activations < base.activations
    assert estimate(tiny_model, optimizer="paged_adamw_8bit").optimizer < base.optimizer
    assert estimate(tiny_model, r=16).lora == 2 * base.lora
    assert base.total > OVERHEAD


def config_for(model: Path, check: str) -> SweepConfig:
    return config_from_dict({
        "base_model": str(model), "data": {"train": "t.jsonl"},
        "search_space": {"sequence_len": [128, 512], "lora_r": [4, 8]},
        "resources": {"gpu": 1, "memory_check": check},
    })  # fmt: skip


def lengths(config: SweepConfig) -> list[Any]:
    spec = config.search_space.sequence_len
    assert isinstance(spec, Choice)
    return spec.values


def test_configs_over_the_gpu_share_are_warned_about_or_dropped(tiny_model: Path) -> None:
    small, large = (estimate(tiny_model, sequence_len=n, precision="fp32").total
                    for n in (128, 512))  # fmt: skip
    budget, said = (small + large) // 2, []  # room for 128 tokens, not for 512
    kept = fit_to_memory(config_for(tiny_model, "warn"), tiny_model, budget=budget,
                         source="s.yaml", progress=said.append)  # fmt: skip
    assert len(said) == 1 and said[0].startswith("Warning: sequence_len 512 at lora_r 8 needs")
    assert lengths(kept) == [128, 512]
    dropped = fit_to_memory(config_for(tiny_model, "drop"), tiny_model, budget=budget,
                            source="s.yaml", progress=said.append)  # fmt: skip
    assert lengths(dropped) == [128]
    refused = re.escape("s.yaml: search_space.sequence_len: no candidate fits")
    with pytest.raises(ConfigError, match=refused):
        fit_to_memory(config_for(tiny_model, "drop"), tiny_model, budget=small // 2,
                      source="s.yaml", progress=said.append)  # fmt: skip
