"""One trial: train a PEFT LoRA adapter with sampled hyperparameters (a torchtune-style recipe).

Lifecycle, in order: ``setup`` (seed, data, model + LoRA, optimizer) -> ``load_checkpoint`` when
resuming -> ``train`` (a rung every 1/evals_per_epoch epoch: held-out eval, checkpoint, report)
-> ``cleanup``. ``run_lora_trial`` is the entry. Nothing here imports ray or mlflow: the caller
passes ``report``, which Ray (or a notebook) turns into whatever it needs. Beside it: the
recipe's state (``trainers/recipe.py``), the held-out scorer (``trainers/scorer.py``), the
checkpoint format (``trainers/checkpoint.py``) and the optimizers (``trainers/optimizers.py``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import torch

from evals import metric_keys as keys
from evals.heldout import HeldoutScores, pad_batch, response_token_loss
from trainers.checkpoint import (
    load_checkpoint,
    reported_metrics,
    save_checkpoint,
    seal_checkpoint,
)
from trainers.config import BASE_REWRITING_INITS, Hyperparameters
from trainers.models import load_causal_lm, load_tokenizer
from trainers.optimizers import build_optimizer
from trainers.recipe import Recipe, Reporter
from trainers.scorer import HeldoutScorer, load_trial_examples
from trainers.spec import TrialSpec
from trainers.targets import ALL_LINEAR, PRESETS, resolve_targets
from trainers.tokenize import (
    IGNORE_INDEX,
    Tokenized,
    resolve_template,
    tokenize_examples,
    truncate,
)

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

    from evals.benchmark_plan import BenchmarkPlan
    from trainers.config import InitLoraWeights, TrainingConfig


# --------------------------------------------------------------------------- entry
def run_lora_trial(
    spec: TrialSpec,
    hparams: Hyperparameters,
    *,
    report: Reporter,
    workdir: Path,
    resume_from: Path | None = None,
) -> dict[str, float]:
    """Train one adapter; report every rung; return the final rung's metrics."""
    started = time.perf_counter()
    recipe = setup(spec, hparams)
    recipe.clock = started  # the setup (model load, tokenizing) is part of the trial's cost
    try:
        if resume_from is not None:
            load_checkpoint(recipe, resume_from)
            final = reported_metrics(resume_from)
            if recipe.progress.step >= recipe.total_steps and final:
                # killed after its last report, before it returned: nothing is left to train,
                # and the restarted attempt reports that rung again, or Ray would end the trial
                # on a result without it (read as stopped early; the driver logs a step once)
                report(final, resume_from)
                return final
        return train(recipe, report=report, workdir=workdir)
    finally:
        cleanup(recipe)


# --------------------------------------------------------------------------- setup


def setup(spec: TrialSpec, hparams: Hyperparameters) -> Recipe:
    """Seed, load data and model, wrap it in LoRA, build the optimizer and the rung plan."""
    from transformers import get_scheduler

    spec = spec.with_searched(hparams)
    training = spec.training
    torch.set_num_threads(max(1, int(spec.cpus)))
    torch.manual_seed(training.seed)
    tokenizer = load_tokenizer(Path(spec.model_path), trust_remote_code=spec.trust_remote_code)
    template = resolve_template(tokenizer, spec.data.template)
    train_examples, heldout = load_trial_examples(spec)
    train_set, truncation = truncate(
        tokenize_examples(train_examples, tokenizer, template),
        hparams.sequence_len,
        rows=[e.row for e in train_examples],
    )
    if not train_set:
        raise ValueError(f"sequence_len {hparams.sequence_len} truncates away every response")
    scorer = HeldoutScorer.for_rows(spec, heldout, tokenizer=tokenizer, template=template)
    model = build_lora_model(spec, hparams)
    optimizer = build_optimizer(
        model,
        training.optimizer,
        lr=hparams.learning_rate,
        decay=hparams.weight_decay,
        loraplus_lr_ratio=training.loraplus_lr_ratio,
    )
    steps_per_epoch = math.ceil(len(train_set) / _per_step(spec))
    rungs = rung_steps(steps_per_epoch, hparams.num_epochs, training.evals_per_epoch)
    scheduler = get_scheduler(
        training.lr_scheduler,
        optimizer,
        num_warmup_steps=math.ceil(hparams.warmup_ratio * rungs[-1]),
        num_training_steps=rungs[-1],
    )
    scaler = torch.amp.GradScaler("cuda") if training.precision == "fp16" else None
    return Recipe(
        spec,
        hparams,
        model,
        tokenizer,
        optimizer,
        scheduler,
        train_set,
        scorer,
        truncation,
        steps_per_epoch,
        rungs,
        scaler=scaler,
        initial_adapter=_initial_adapter(model, training),
    )


def build_lora_model(spec: TrialSpec, hparams: Hyperparameters) -> PeftModel:
    """The base model with a fresh PEFT LoRA on the target modules (base weights frozen)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    training = spec.training
    qlora = training.adapter == "qlora"
    checkpointing = training.gradient_checkpointing
    model = load_causal_lm(
        Path(spec.model_path),
        trust_remote_code=spec.trust_remote_code,
        device=spec.device,
        precision=training.precision,
        four_bit=qlora,
    )
    if qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=hparams.lora_r,
        lora_alpha=_peft_alpha(hparams.lora_alpha),
        lora_dropout=hparams.lora_dropout,
        task_type="CAUSAL_LM",
        target_modules=_targets(model, hparams.lora_target_modules),
        use_rslora=training.use_rslora,
        use_dora=training.use_dora,
        init_lora_weights=_peft_init(training.init_lora_weights),
    )
    peft_model = get_peft_model(model, lora)
    assert isinstance(peft_model, PeftModel)  # mixed=False: never a PeftMixedModel
    return peft_model


def _peft_alpha(alpha: float) -> int:
    """PEFT annotates lora_alpha as an int but scales by lora_alpha / r: a whole alpha goes as an
    int (as adapter_config.json has held it), a searched fractional one as it is."""
    return int(alpha) if alpha.is_integer() else cast("int", alpha)


def _targets(model: PreTrainedModel, modules: Sequence[str]) -> list[str] | str:
    """PEFT's target_modules: its own "all-linear" string (not a list holding it), the
    "attention" preset resolved to this model's attention linear layers (trainers/targets.py),
    or the names as given."""
    if list(modules) == [ALL_LINEAR]:
        return ALL_LINEAR
    if not any(name in PRESETS for name in modules):
        return list(modules)
    linear = [name for name, module in model.named_modules() if _is_linear(module)]
    return resolve_targets(modules, linear)


def _is_linear(module: torch.nn.Module) -> bool:
    """A layer PEFT's LoRA adapts as a linear one (GPT-2's Conv1D included)."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def _peft_init(init: InitLoraWeights) -> bool | Literal["gaussian", "pissa", "olora"]:
    """PEFT's init_lora_weights: True is its default (A random, B zero).

    PiSSA is the exact SVD, not PEFT's faster randomised "pissa_niter_N": a restart runs the init
    again and must get back the residual the adapter trained against; the exact SVD's residual is
    unique (whatever the signs of its vectors), a randomised one's is not.
    """
    return True if init == "default" else init


def _initial_adapter(model: PeftModel, training: TrainingConfig) -> dict[str, torch.Tensor] | None:
    """PiSSA's and OLoRA's initial A and B (they took that part out of the base weights); None
    for the inits that leave the base as it is."""
    if training.init_lora_weights not in BASE_REWRITING_INITS:
        return None
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def autocast(spec: TrialSpec) -> contextlib.AbstractContextManager[None]:
    """Mixed precision for the forward pass: bf16 or fp16 autocast when asked, else nothing."""
    precision = spec.training.precision
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    mixed: contextlib.AbstractContextManager[None] = torch.autocast(
        device_type=spec.device.split(":")[0], dtype=dtype
    )
    return mixed


def rung_steps(steps_per_epoch: int, epochs: int, evals_per_epoch: int) -> list[int]:
    """The optimizer steps after which a rung (eval + checkpoint + report) happens."""
    per_epoch = min(evals_per_epoch, steps_per_epoch)
    steps = {
        epoch * steps_per_epoch + round(k * steps_per_epoch / per_epoch)
        for epoch in range(epochs)
        for k in range(1, per_epoch + 1)
    }
    return sorted(steps)


# --------------------------------------------------------------------------- train
def train(recipe: Recipe, *, report: Reporter, workdir: Path) -> dict[str, float]:
    """The loop: one optimizer step at a time, a rung at each planned step."""
    progress, metrics = recipe.progress, {}
    recipe.first_step_at = time.time()
    while progress.step < recipe.total_steps:
        started = time.perf_counter()
        loss, tokens = _optimizer_step(recipe)
        progress.train_seconds += time.perf_counter() - started
        progress.step += 1
        progress.tokens_trained += tokens
        progress.loss_sum += loss
        progress.loss_steps += 1
        if progress.step in recipe.rung_steps:
            progress.rung += 1
            metrics = _run_rung(recipe, report=report, workdir=workdir)
    return metrics


def _step_examples(recipe: Recipe, step: int) -> list[Tokenized]:
    """The examples of optimizer step ``step``: a seeded permutation per epoch, so resume is exact."""
    epoch, within = divmod(step, recipe.steps_per_epoch)
    generator = torch.Generator().manual_seed(recipe.spec.training.seed + epoch)
    order = torch.randperm(len(recipe.train_set), generator=generator).tolist()
    per_step = _per_step(recipe.spec)
    return [recipe.train_set[i] for i in order[within * per_step : (within + 1) * per_step]]


def _per_step(spec: TrialSpec) -> int:
    """Examples per optimizer step: micro_batch_size x gradient_accumulation_steps."""
    return spec.training.micro_batch_size * spec.training.gradient_accumulation_steps


def _optimizer_step(recipe: Recipe) -> tuple[float, int]:
    """Forward/backward over the step's micro-batches, then one optimizer step."""
    examples = _step_examples(recipe, recipe.progress.step)
    micro = recipe.spec.training.micro_batch_size
    targets = sum(sum(1 for x in e.labels[1:] if x != IGNORE_INDEX) for e in examples)
    n_items = torch.tensor(max(targets, 1), device=recipe.spec.device)
    recipe.model.train()
    total = 0.0
    for start in range(0, len(examples), micro):
        batch = collate(
            examples[start : start + micro],
            pack=recipe.spec.training.sample_packing,
            pad_id=recipe.tokenizer.pad_token_id,
            device=recipe.spec.device,
        )
        with autocast(recipe.spec):
            loss = forward_loss(recipe.model, batch, num_items=n_items)
        (recipe.scaler.scale(loss) if recipe.scaler else loss).backward()
        total += float(loss.detach())
    if not math.isfinite(total):
        raise FloatingPointError(f"training loss became {total} at step {recipe.progress.step + 1}")
    if recipe.scaler:
        recipe.scaler.unscale_(recipe.optimizer)
    torch.nn.utils.clip_grad_norm_(
        [p for p in recipe.model.parameters() if p.requires_grad],
        recipe.spec.training.max_grad_norm,
    )
    if recipe.scaler:  # fp16: a step with inf/NaN gradients is skipped and the scale lowered
        recipe.scaler.step(recipe.optimizer)
        recipe.scaler.update()
    else:
        recipe.optimizer.step()
    recipe.scheduler.step()
    recipe.optimizer.zero_grad(set_to_none=True)
    return total, sum(len(e) for e in examples)


def forward_loss(
    model: PeftModel, batch: dict[str, torch.Tensor], *, num_items: torch.Tensor
) -> torch.Tensor:
    """The step's loss share of this micro-batch: summed response-token loss / the step's count."""
    loss, _ = response_token_loss(model, batch)
    share: torch.Tensor = loss / num_items
    return share


def collate(
    examples: list[Tokenized], *, pack: bool, pad_id: int, device: str
) -> dict[str, torch.Tensor]:
    """Pad to the longest row (default), or pack into one row with restarting position ids.

    Packing computes no padding, but without a variable-length attention kernel (CPU, SDPA)
    attention runs over the whole packed row under a block mask: cheaper only with flash-attention.
    """
    if pack:
        ids = [t for e in examples for t in e.input_ids]
        labels = [t for e in examples for t in [IGNORE_INDEX, *e.labels[1:]]]
        positions = [p for e in examples for p in range(len(e))]
        return {
            "input_ids": torch.tensor([ids], device=device),
            "labels": torch.tensor([labels], device=device),
            "position_ids": torch.tensor([positions], device=device),
        }
    batch = pad_batch(examples, pad_id=pad_id)
    return {key: value.to(device) for key, value in batch.items()}


def evaluate(recipe: Recipe) -> HeldoutScores:
    return recipe.scorer.score(recipe.model)


def _run_rung(recipe: Recipe, *, report: Reporter, workdir: Path) -> dict[str, float]:
    """Evaluate, checkpoint and report: the unit ASHA compares trials on."""
    progress = recipe.progress
    scores = evaluate(recipe)
    metrics = {
        **scores.as_metrics(),
        keys.TRAIN_LOSS: progress.loss_sum / max(progress.loss_steps, 1),
        keys.TRAIN_TOKENS_PER_SECOND: progress.tokens_trained / max(progress.train_seconds, 1e-9),
        keys.TRAIN_SECONDS: progress.train_seconds,
        keys.TOKENS_TRAINED: float(progress.tokens_trained),
        keys.EPOCH: progress.step / recipe.steps_per_epoch,
        keys.STEP: float(progress.step),
        keys.RUNG: float(progress.rung),
        keys.FINAL_RUNG: float(progress.step == recipe.total_steps),
        keys.DATA_TRUNCATED_FRACTION: recipe.truncation.truncated_fraction,
        keys.DATA_DROPPED_EXAMPLES: float(recipe.truncation.dropped),
        keys.TRIAL_PID: float(os.getpid()),
        **startup_metrics(recipe),
    }
    progress.loss_sum, progress.loss_steps = 0.0, 0
    checkpoint_dir = workdir / f"checkpoint-{progress.step:06d}"
    if recipe.spec.benchmarks is not None:
        metrics.update(
            benchmark_rung(recipe, metrics, plan=recipe.spec.benchmarks, checkpoint=checkpoint_dir)
        )
    metrics.update(cost_metrics(recipe))  # before the save, so a restart resumes the count
    checkpoint = save_checkpoint(recipe, checkpoint_dir, scores, metrics=metrics)
    seal_checkpoint(checkpoint)
    report(metrics, checkpoint)
    return metrics


def startup_metrics(recipe: Recipe) -> dict[str, float]:
    """When this attempt's first optimizer step began (unix seconds: ``sweep launch`` to first
    step is measured from it), and the seconds from its process's start to that step (imports,
    data, model, LoRA)."""
    import psutil

    started = psutil.Process().create_time()
    return {
        keys.TRIAL_FIRST_STEP_AT: recipe.first_step_at,
        keys.TRIAL_STARTUP_SECONDS: recipe.first_step_at - started,
    }


def cost_metrics(recipe: Recipe) -> dict[str, float]:
    """What the trial has cost so far: device-seconds (wall seconds x the GPUs, or CPUs, it
    holds), and its peak memory (CUDA allocator on a GPU, the process's peak RSS on CPU)."""
    import resource

    progress, now = recipe.progress, time.perf_counter()
    progress.wall_seconds += now - recipe.clock
    recipe.clock = now
    spec = recipe.spec
    devices = spec.gpus if spec.device.startswith("cuda") else spec.cpus
    if spec.device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        keys.COST_WALL_SECONDS: progress.wall_seconds,
        keys.COST_DEVICE_SECONDS: progress.wall_seconds * max(devices, 1e-9),
        keys.COST_PEAK_MEMORY_MB: peak_mb,
    }


def benchmark_rung(
    recipe: Recipe, metrics: dict[str, float], *, plan: BenchmarkPlan, checkpoint: Path
) -> dict[str, float]:
    """At the last rung, proxy benchmark scores (per-sample outputs go in the checkpoint).

    The composite objective is reported at every rung so the scheduler can compare trials; before
    the last rung no benchmark has been scored, so it equals the held-out metric there.
    """
    started = time.perf_counter()  # the seconds logged include importing lm-eval, its index
    from evals.benchmark_plan import phase_metrics, write_samples
    from evals.metric_keys import COMPOSITE, PROXY
    from evals.sequential import score_screening

    heldout = metrics.get(plan.heldout_metric)
    if not metrics[keys.FINAL_RUNG] or not plan.tasks:  # every task skipped: nothing to score
        return {COMPOSITE: heldout} if plan.weights and heldout is not None else {}
    recipe.model.eval()
    scores, _ = score_screening(recipe.model, recipe.tokenizer, plan)  # guarded tasks in looks
    write_samples(scores, checkpoint / "benchmarks" / PROXY)
    seconds = time.perf_counter() - started
    return phase_metrics(scores, plan, phase=PROXY, heldout=heldout, seconds=seconds)


# --------------------------------------------------------------------------- save / resume


def cleanup(recipe: Recipe) -> None:
    """Free the model and optimizer now, not whenever the process exits."""
    del recipe.model, recipe.optimizer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- base model
