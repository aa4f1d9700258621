"""The dtype benchmarks are scored in: bf16 for an fp32 model on a CPU that multiplies bf16
natively, else the model's own (or fp32, as lm-eval's CLI scores), and the model in that dtype
for scoring, a merged copy when it must be cast, so the trained weights are never rounded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


SCORING_DTYPES = ("auto", "float32", "bfloat16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX-512 BF16: 3.5x fp32's throughput
    for SmolLM2-135M on one core here, docs/perf.md); read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def scoring_dtype(model: torch.nn.Module, choice: str) -> torch.dtype:
    """The dtype benchmarks are scored in: ``auto`` is bf16 for an fp32 model on a CPU that
    multiplies bf16 natively, else the model's own dtype (a GPU model already trains in bf16 or
    fp16); ``float32`` scores exactly as an fp32 lm-eval CLI run does."""
    import torch

    own = next(model.parameters()).dtype
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None):
        return own  # a 4-bit or 8-bit model is scored as it is: its layers are not castable
    if choice == "float32":
        return torch.float32 if own in (torch.float32, torch.bfloat16, torch.float16) else own
    if choice == "bfloat16":
        return torch.bfloat16
    on_cpu = next(model.parameters()).device.type == "cpu"
    return torch.bfloat16 if own == torch.float32 and on_cpu and cpu_has_bf16() else own


@contextlib.contextmanager
def scored_in(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[torch.nn.Module]:
    """The model in ``dtype`` for scoring: itself when it already is, else a copy (the
    trained weights are never rounded in place). A copied PEFT model has its adapter merged
    first, in the trained precision: the same function, without a LoRA branch beside every
    adapted layer (2.3x slower on one CPU core with all-linear LoRA, perf/bench_forgetting.py)."""
    import copy

    if next(model.parameters()).dtype == dtype:
        yield model
        return
    copied = copy.deepcopy(model)
    merge = getattr(copied, "merge_and_unload", None)
    if callable(merge):  # LoRA dropout is off in eval: merging is exact
        copied = merge()
    copied = copied.to(dtype)
    try:
        yield copied
    finally:
        del copied
