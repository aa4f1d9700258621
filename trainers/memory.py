"""A trial's peak accelerator memory, estimated before launch from the model's own files.

    weights      parameters x bytes at the precision; with QLoRA the decoder's linear layers at
                 4.127 bits each (NF4 + double-quantised absmax, the QLoRA paper's figure), the
                 embeddings and head at the compute dtype
    lora         r x (in + out) per targeted module and layer, fp32 (PEFT keeps adapters fp32)
    optimizer    per LoRA parameter: its gradient (4 B) + AdamW's two moments (8 B; 2 B paged
                 8-bit; SGD's momentum 4 B)
    activations  per decoder layer, tokens x hidden x 34 bytes at 16 bits (Korthikanti et al.
                 2022 with a fused attention kernel: no sequence^2 term), doubled at fp32; with
                 gradient checkpointing each layer keeps only its input (2 bytes per element at 16
                 bits), plus one layer's full set while it is recomputed
    logits       tokens x vocabulary x 4 bytes (the fp32 loss): an upper bound, as the trainer
                 runs the head on response tokens only
    overhead     0.5 GiB for the CUDA context and allocator slack

tokens = micro_batch_size x sequence_len. It is a planning figure (within tens of percent), to
warn about, or drop, configs that cannot fit before any GPU time is spent.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields
from pathlib import Path

GIB = 2**30
NF4_BITS = 4.127
OVERHEAD = GIB // 2
PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    lora: int
    optimizer: int
    activations: int
    logits: int
    overhead: int = OVERHEAD

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        parts = ", ".join(f"{f.name} {getattr(self, f.name) / GIB:.2f}" for f in fields(self))
        return f"{self.total / GIB:.2f} GiB ({parts})"


@functools.lru_cache(maxsize=8)  # read once for all the candidates a launch estimates
def weight_shapes(model_path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, read from the safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(model_path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def lora_parameters(shapes: dict[str, tuple[int, ...]], *, r: int, targets: list[str]) -> int:
    """LoRA's A (r x in) and B (out x r) for every targeted linear layer (presets resolved)."""
    from trainers.targets import resolve_targets

    linear = {
        key.removesuffix(".weight"): shape
        for key, shape in shapes.items()
        if key.endswith(".weight") and len(shape) == 2
    }
    total = 0
    for module in resolve_targets(targets, linear):
        out_features, in_features = linear[module]
        total += r * (in_features + out_features)
    return total


def estimate_memory(
    model_path: Path,
    *,
    r: int,
    targets: list[str],
    sequence_len: int,
    micro_batch: int,
    precision: str,
    four_bit: bool = False,
    gradient_checkpointing: bool = False,
    optimizer: str = "adamw_torch",
) -> MemoryEstimate:
    """Peak memory of one trial; ``precision`` is resolved (fp32, bf16 or fp16)."""
    config = json.loads((model_path / "config.json").read_text())
    shapes = weight_shapes(model_path)
    width = PRECISION_BYTES[precision]
    weights = 0.0
    for key, shape in shapes.items():
        count = _numel(shape)
        quantized = four_bit and len(shape) == 2 and ".layers." in key
        weights += count * (NF4_BITS / 8 if quantized else width)
    lora = lora_parameters(shapes, r=r, targets=targets)
    state = {"sgd": 4, "paged_adamw_8bit": 2}.get(optimizer, 8)
    tokens, hidden = micro_batch * sequence_len, int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    scale = 2 if width == 4 else 1  # the 34-byte figure is for 16-bit activations
    per_layer = tokens * hidden * 34 * scale
    if gradient_checkpointing:
        activations = layers * tokens * hidden * 2 * scale + per_layer
    else:
        activations = layers * per_layer
    logits = tokens * int(config["vocab_size"]) * 4
    return MemoryEstimate(
        weights=int(weights),
        lora=lora * 4,
        optimizer=lora * (4 + state),
        activations=activations,
        logits=logits,
    )


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
