"""Trainer throughput: our LoRA trial loop vs a plain HF Trainer + PEFT, same model/data/hyperparameters.

    python perf/bench_trainer.py --steps 16

Ours runs in its default mode (pad to the longest row, LM head on response positions only) and
packed (one row per micro-batch). Both train the same LoRA (r, alpha, targets, lr) on the same tokenized examples (loss on responses
only) at the same batch size, for the same number of optimizer steps, in this process, one after
the other. Throughput counts real (non-padding) tokens per second of training wall time, after
warm-up steps. Baselines: padding to sequence_len (what most guides do: padding="max_length"),
and dynamic padding to the longest row of each batch (DataCollatorForSeq2Seq).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402

from trainers.lora_trial import TrialSpec, _optimizer_step, setup  # noqa: E402
from trainers.tokenize import IGNORE_INDEX  # noqa: E402

HPARAMS = {
    "learning_rate": 1e-3,
    "lora_r": 8,
    "lora_alpha": 16,
    "num_epochs": 1,
    "sequence_len": 256,
    "lora_dropout": 0.05,
    "weight_decay": 0.0,
    "warmup_ratio": 0.0,
}


def ours(spec: TrialSpec, *, steps: int, warmup: int, pack: bool = False) -> dict[str, float]:
    spec = replace(spec, training={**spec.training, "sample_packing": pack})
    recipe = setup(spec, HPARAMS)
    for _ in range(warmup):
        _optimizer_step(recipe)
        recipe.progress.step += 1
    tokens, started = 0, time.perf_counter()
    for _ in range(steps):
        tokens += _optimizer_step(recipe)[1]
        recipe.progress.step += 1
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


class _Timer:
    """A TrainerCallback timing the steps after warm-up, without importing transformers at module level."""

    def __new__(cls, warmup: int) -> Any:
        from transformers import TrainerCallback

        class Timer(TrainerCallback):  # type: ignore[misc]
            def __init__(self) -> None:
                self.started = 0.0
                self.ended = 0.0

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step == warmup:
                    self.started = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self.ended = time.perf_counter()

        return Timer()


def hf_trainer(spec: TrialSpec, *, steps: int, warmup: int, pad_to_max: bool) -> dict[str, float]:
    """The baseline: transformers.Trainer + peft.get_peft_model, padded batches."""
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    recipe = setup(spec, HPARAMS)  # reuse its tokenized data only
    tokenizer, examples = recipe.tokenizer, recipe.train_set
    del recipe
    width = int(HPARAMS["sequence_len"])
    rows = []
    for e in examples:
        pad = width - len(e) if pad_to_max else 0
        rows.append(
            {
                "input_ids": e.input_ids + [tokenizer.pad_token_id] * pad,
                "attention_mask": [1] * len(e) + [0] * pad,
                "labels": e.labels + [IGNORE_INDEX] * pad,
            }
        )
    torch.manual_seed(42)
    model = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            target_modules=["q_proj", "v_proj"],
            task_type="CAUSAL_LM",
        ),
    )
    timer = _Timer(warmup)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    real_tokens: list[int] = []

    def counting_collator(batch: list[dict[str, Any]]) -> Any:
        real_tokens.append(sum(sum(row["attention_mask"]) for row in batch))  # one batch per step
        return collator(batch)

    args = TrainingArguments(
        output_dir="/tmp/bench-hf",
        per_device_train_batch_size=4,
        max_steps=steps + warmup,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        lr_scheduler_type="constant",
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        callbacks=[timer],
        data_collator=counting_collator,
    )
    trainer.train()
    seconds = timer.ended - timer.started
    tokens = sum(real_tokens[warmup : warmup + steps])
    return {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from trainers.models import resolve_base_model

    torch.set_num_threads(args.threads)
    model = resolve_base_model(args.model).path
    spec = TrialSpec(
        model_path=str(model),
        train_path=str(REPO / "data/notes_to_json/train.jsonl"),
        heldout_path=str(REPO / "data/notes_to_json/heldout.jsonl"),
        task_metric="field_f1",
        training={"micro_batch_size": 4, "seed": 42},
        cpus=args.threads,
    )
    result = {
        "ours": ours(spec, steps=args.steps, warmup=args.warmup),
        "ours_packed": ours(spec, steps=args.steps, warmup=args.warmup, pack=True),
        "hf_trainer_max_length": hf_trainer(
            spec, steps=args.steps, warmup=args.warmup, pad_to_max=True
        ),
        "hf_trainer_dynamic": hf_trainer(
            spec, steps=args.steps, warmup=args.warmup, pad_to_max=False
        ),
    }
    base = result["ours"]["tokens_per_second"]
    result["ratio_vs_max_length"] = base / result["hf_trainer_max_length"]["tokens_per_second"]
    result["ratio_vs_dynamic"] = base / result["hf_trainer_dynamic"]["tokens_per_second"]
    result["settings"] = {
        "model": args.model,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "micro_batch_size": 4,
        **HPARAMS,
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
