"""A short timed trial on the real model: what ``sweep validate`` estimates a sweep's time from.

It runs the trial recipe's own pieces (``trainers/lora_trial.py``) on the sweep's data, at the
trial's thread count: setup (tokenizer, data, model, LoRA), a few optimizer steps, one full rung
evaluation (held-out loss on every row, generation on ``generation_samples`` rows) and one
checkpoint. ``sweeps/driver/estimate.py`` turns these seconds into the sweep's wall time.
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.config import Hyperparameters
from trainers.spec import TrialSpec

if TYPE_CHECKING:
    from trainers.recipe import Recipe

WORKER_IMPORTS = "import torch, transformers, peft"  # what a fresh trial process loads first


@dataclass(frozen=True)
class TrialTiming:
    """Seconds measured on this machine for one trial's pieces, at one sequence_len."""

    sequence_len: int
    worker_start: float  # a fresh process importing torch, transformers and peft
    setup: float  # tokenizer, data, model and LoRA (plus the first step's warm-up)
    step: float  # one optimizer step (micro_batch x gradient_accumulation rows)
    tokens_per_step: float
    rung: float  # one held-out evaluation plus one checkpoint
    steps_timed: int
    train_rows: int  # rows left after truncation at sequence_len
    steps_per_epoch: int
    rungs_per_epoch: int
    benchmark: float = 0.0  # the proxy benchmarks a trial scores at its last rung (0: none)
    benchmark_documents: int = 0  # the documents those seconds scored


def time_trial(spec: TrialSpec, hparams: Hyperparameters, *, steps: int = 4) -> TrialTiming:
    """Run setup, ``steps`` optimizer steps, one rung evaluation and one checkpoint; time each.
    (torch is imported here, not at module level: sweeps/driver/estimate.py reads TrialTiming.)"""
    from trainers.checkpoint import save_checkpoint, seal_checkpoint
    from trainers.lora_trial import _optimizer_step, cleanup, evaluate, setup

    worker_start = _time_worker_imports()
    started = time.perf_counter()
    recipe = setup(spec, hparams)
    setup_seconds = time.perf_counter() - started
    try:
        durations, tokens = [], []
        for _ in range(max(2, steps)):
            began = time.perf_counter()
            _, count = _optimizer_step(recipe)
            durations.append(time.perf_counter() - began)
            tokens.append(count)
            recipe.progress.step += 1
        step = statistics.mean(durations[1:])  # the first carries one-off warm-up
        began = time.perf_counter()
        scores = evaluate(recipe)
        with tempfile.TemporaryDirectory(prefix="lora-sweep-estimate-") as scratch:
            seal_checkpoint(save_checkpoint(recipe, Path(scratch) / "checkpoint", scores))
        rung = time.perf_counter() - began
        benchmark, documents = _time_benchmarks(recipe)
        rungs_per_epoch = len([s for s in recipe.rung_steps if s <= recipe.steps_per_epoch])
        return TrialTiming(
            sequence_len=hparams.sequence_len,
            worker_start=worker_start,
            setup=setup_seconds + durations[0] - step,
            step=step,
            tokens_per_step=statistics.mean(tokens),
            rung=rung,
            steps_timed=len(durations),
            train_rows=len(recipe.train_set),
            steps_per_epoch=recipe.steps_per_epoch,
            rungs_per_epoch=rungs_per_epoch,
            benchmark=benchmark,
            benchmark_documents=documents,
        )
    finally:
        cleanup(recipe)


def _time_benchmarks(recipe: Recipe) -> tuple[float, int]:
    """The proxy benchmarks a completed trial scores at its last rung, on the trained model: all
    its screening documents (an upper bound: a guarded task's looks may stop at half of them).
    Returns the seconds and the documents."""
    plan = recipe.spec.benchmarks
    if plan is None or not plan.tasks:
        return 0.0, 0
    from evals.benchmark_plan import PROXY, score_plan

    began = time.perf_counter()
    recipe.model.eval()
    score_plan(recipe.model, recipe.tokenizer, plan, phase=PROXY)
    documents = sum(len(ids) for task in plan.tasks for ids in plan.proxy[task].values())
    return time.perf_counter() - began, documents


@functools.cache
def _time_worker_imports() -> float:
    """A trial runs in a fresh Ray worker process: what importing its libraries costs here.
    Measured once per process: it does not change between two dry runs on one machine (the
    Python API, a notebook), and each measurement costs a fresh interpreter's imports."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", WORKER_IMPORTS], check=True, capture_output=True)
    return time.perf_counter() - began
