"""A trial's state while it trains: the recipe ``trainers/lora_trial.py`` builds and runs, and
where it stands (``Progress``), which a checkpoint saves."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainers.config import Hyperparameters
from trainers.spec import TrialSpec
from trainers.tokenize import Tokenized, TruncationStats

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from trainers.scorer import HeldoutScorer

Reporter = Callable[[dict[str, float], Path], None]


@dataclass
class Progress:
    """What a checkpoint restores: where the trial stands."""

    step: int = 0
    rung: int = 0
    tokens_trained: int = 0
    train_seconds: float = 0.0
    loss_sum: float = 0.0
    loss_steps: int = 0
    wall_seconds: float = 0.0  # setup, training, evaluation and checkpoints, up to the last rung


@dataclass
class Recipe:
    spec: TrialSpec
    hparams: Hyperparameters
    model: PeftModel
    tokenizer: PreTrainedTokenizerBase
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_set: list[Tokenized]
    scorer: HeldoutScorer
    truncation: TruncationStats
    steps_per_epoch: int
    rung_steps: list[int]
    progress: Progress = field(default_factory=Progress)
    scaler: torch.amp.GradScaler | None = None  # for fp16 (its loss scale is checkpointed)
    initial_adapter: dict[str, torch.Tensor] | None = None  # PiSSA/OLoRA's A and B before training
    first_step_at: float = 0.0  # wall clock (unix s) when this attempt's first step began
    clock: float = field(default_factory=time.perf_counter)  # when wall_seconds last grew

    @property
    def total_steps(self) -> int:
        return self.rung_steps[-1]
