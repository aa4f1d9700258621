"""Which layers LoRA adapts: ``lora_target_modules`` resolved against a model's own layers.

Two names are presets, resolved per architecture from the model's linear layers:
- ``all-linear``: every linear layer of the transformer blocks (the LM head excluded), as PEFT's
  own "all-linear" does: the evidence's default ("LoRA Without Regret", Schulman et al. 2025);
- ``attention``: the linear layers inside the attention blocks (q/k/v/o on Llama, Qwen, Mistral;
  c_attn and the attention's c_proj on GPT-2).

Any other name is a module name, matched as PEFT matches it (the name, or its last dotted parts).
A searched value may join several names with commas ("q_proj,v_proj"). No torch here: preflight
resolves against the weight headers, the trainer against the loaded model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

ALL_LINEAR = "all-linear"
ATTENTION = "attention"
PRESETS = (ALL_LINEAR, ATTENTION)
ATTENTION_BLOCKS = ("self_attn", "attn", "attention", "self_attention")
BLOCK_MARKERS = (".layers.", ".h.", ".blocks.", ".block.")


def split_targets(value: str | Sequence[str]) -> list[str]:
    """A searched value ("q_proj,v_proj", "attention") or a YAML list, as a list of names."""
    names = value.split(",") if isinstance(value, str) else list(value)
    return [name.strip() for name in names if name.strip()]


def join_targets(names: Sequence[str]) -> str:
    """The one-string form a search space's choice (and an MLflow param) holds."""
    return ",".join(names)


def in_blocks(module: str) -> bool:
    return any(marker in f".{module}." for marker in BLOCK_MARKERS)


def is_attention(module: str) -> bool:
    return any(part in ATTENTION_BLOCKS for part in module.split(".")[:-1])


def resolve_targets(targets: Sequence[str], linear_modules: Iterable[str]) -> list[str]:
    """The full names of the linear layers the targets select, in the model's order.

    ``linear_modules`` are the model's linear layers (full dotted names). A name that
    selects nothing is left for the caller to report (see :func:`unknown_targets`).
    """
    return [m for m in linear_modules if any(_selects(t, m) for t in targets)]


def _selects(target: str, module: str) -> bool:
    if target == ALL_LINEAR:
        return in_blocks(module)
    if target == ATTENTION:
        return in_blocks(module) and is_attention(module)
    return module == target or module.endswith(f".{target}")


def unknown_targets(targets: Sequence[str], linear_modules: Iterable[str]) -> list[str]:
    """The targets that select no linear layer of the model."""
    modules = list(linear_modules)
    return [t for t in targets if not resolve_targets([t], modules)]
