"""A trial's optimizer: torch's AdamW or SGD, QLoRA's paged AdamW (bitsandbytes), or PEFT's
LoRA+ groups of any of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bitsandbytes.optim import PagedAdamW8bit, PagedAdamW32bit
    from peft import PeftModel

SGD_MOMENTUM = 0.9


def build_optimizer(
    model: PeftModel, name: str, *, lr: float, decay: float, loraplus_lr_ratio: float | None
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (training.optimizer) over the trainable parameters: torch's AdamW,
    SGD with momentum, or a paged AdamW (bitsandbytes, CUDA). With loraplus_lr_ratio, PEFT's
    LoRA+ builds that optimizer with the A matrices at ``lr`` and the B matrices (and 1-D
    parameters: DoRA's magnitudes) at ratio x ``lr``."""
    if loraplus_lr_ratio is not None:
        return _loraplus_optimizer(model, name, lr=lr, decay=decay, ratio=loraplus_lr_ratio)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=decay, momentum=SGD_MOMENTUM)
    if name.startswith("paged_adamw"):
        optimizer: torch.optim.Optimizer = _paged_adamw(name)(params, lr=lr, weight_decay=decay)
        return optimizer
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def _loraplus_optimizer(
    model: PeftModel, name: str, *, lr: float, decay: float, ratio: float
) -> torch.optim.Optimizer:
    """LoRA+ (PEFT's create_loraplus_optimizer): the optimizer ``name`` with its parameters in
    groups, B's learning rate ``ratio`` x A's, weight decay on all but biases and norms."""
    from peft.optimizers import create_loraplus_optimizer

    optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW
    extra = {}
    if name == "sgd":
        optimizer_cls, extra = torch.optim.SGD, {"momentum": SGD_MOMENTUM}
    elif name.startswith("paged_adamw"):
        optimizer_cls = _paged_adamw(name)
    return create_loraplus_optimizer(
        model, optimizer_cls, lr=lr, loraplus_lr_ratio=ratio, loraplus_weight_decay=decay, **extra
    )


def _paged_adamw(name: str) -> type[PagedAdamW8bit] | type[PagedAdamW32bit]:
    """QLoRA's paged optimizers (bitsandbytes, CUDA)."""
    import bitsandbytes as bnb

    paged: type[PagedAdamW8bit] | type[PagedAdamW32bit] = (
        bnb.optim.PagedAdamW8bit if name.endswith("8bit") else bnb.optim.PagedAdamW32bit
    )
    return paged
