"""Trainer throughput: our LoRA trial loop vs a plain HF Trainer + PEFT, same model/data/hyperparameters.

    python perf/bench_trainer.py --steps 16

Ours runs in its default mode (pad to the longest row, LM head on response positions only) and
packed (one row per micro-batch). Both train the same LoRA (r, alpha, targets, lr) on the same tokenized examples (loss on responses
only) at the same batch size, for the same number of optimizer steps, in this process, one after
the other. Throughput counts real (non-padding) tokens per second of training wall time, after
warm-up steps. Baselines: padding to sequence_len (what most guides do: padding="max_length"),
and dynamic padding to the longest row of each batch (DataCollatorForSeq2Seq).

On a CUDA GPU (issue 7's GPU figures):

    python perf/bench_trainer.py --device cuda --precision bf16 --out lora.json
    python perf/bench_trainer.py --device cuda --precision bf16 --adapter qlora --out qlora.json
    python perf/run_all.py --merge trainer_cuda lora.json   (then qlora.json; renders docs/perf.md)

adds each run's peak GPU memory (torch.cuda.max_memory_allocated) and MFU. MFU convention: a
LoRA step costs about 4N FLOPs per token (N: the base model's parameters; forward 2N, backward
2N for the activation gradients; the frozen weights get no weight gradients, and attention's
own FLOPs are left out), counted over real (non-padding) tokens, divided by the GPU's dense
bf16 peak from its data sheet (--peak-tflops for a GPU not in PEAK_TFLOPS). The QLoRA baseline
is the guides' recipe: BitsAndBytesConfig NF4 + double quantisation,
prepare_model_for_kbit_training, then get_peft_model.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402

from sweeps.config import DataConfig, TrainingConfig  # noqa: E402
from trainers.lora_trial import _optimizer_step, setup  # noqa: E402
from trainers.spec import TrialSpec  # noqa: E402
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


# Dense bf16 tensor-core peaks from NVIDIA's data sheets (TFLOP/s), by a part of the GPU's name.
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1}


def peak_tflops(device: str, given: float | None) -> float | None:
    """The GPU's dense bf16 peak: --peak-tflops, else looked up by name (None on CPU)."""
    if given is not None or not device.startswith("cuda"):
        return given
    name = torch.cuda.get_device_name(torch.device(device))
    return next((peak for part, peak in PEAK_TFLOPS.items() if part in name), None)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()
        _sync(device)
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def _measured(device: str, *, tokens: int, seconds: float) -> dict[str, float]:
    """Tokens, seconds and tokens/s, with the peak GPU memory since _reset_peak on CUDA."""
    result = {"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds}
    if device.startswith("cuda"):
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return result


def ours(spec: TrialSpec, *, steps: int, warmup: int, pack: bool = False) -> dict[str, float]:
    training = spec.training.model_copy(update={"sample_packing": pack})
    spec = spec.model_copy(update={"training": training})
    _reset_peak(spec.device)
    recipe = setup(spec, HPARAMS)
    for _ in range(warmup):
        _optimizer_step(recipe)
        recipe.progress.step += 1
    _sync(spec.device)
    tokens, started = 0, time.perf_counter()
    for _ in range(steps):
        tokens += _optimizer_step(recipe)[1]
        recipe.progress.step += 1
    _sync(spec.device)
    seconds = time.perf_counter() - started
    del recipe
    return _measured(spec.device, tokens=tokens, seconds=seconds)


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
    _reset_peak(spec.device)
    model = baseline_model(spec)
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
        use_cpu=not spec.device.startswith("cuda"),
        bf16=spec.training.precision == "bf16",
        fp16=spec.training.precision == "fp16",
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
    return _measured(spec.device, tokens=tokens, seconds=seconds)


def baseline_model(spec: TrialSpec) -> Any:
    """The base model as the guides load it: fp32 on CPU; on CUDA at the run's precision, or
    NF4 with double quantisation and prepare_model_for_kbit_training for QLoRA."""
    from transformers import AutoModelForCausalLM

    from trainers.models import qlora_quantization, weights_dtype

    device = spec.device
    dtype = weights_dtype(spec.training.precision, device)
    if spec.training.adapter != "qlora":
        return AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=dtype).to(device)
    from peft import prepare_model_for_kbit_training

    model = AutoModelForCausalLM.from_pretrained(
        spec.model_path, dtype=dtype, quantization_config=qlora_quantization(device),
        device_map={"": torch.device(device).index or 0},
    )  # fmt: skip
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N")
    parser.add_argument("--adapter", choices=["lora", "qlora"], default="lora")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU is visible to torch")
    if args.device == "cpu" and (args.adapter == "qlora" or args.precision == "fp16"):
        parser.error("--adapter qlora and --precision fp16 need --device cuda")
    from trainers.models import resolve_base_model

    torch.set_num_threads(args.threads)
    model = resolve_base_model(args.model).path
    spec = TrialSpec(
        model_path=str(model),
        data=DataConfig(train=str(REPO / "data/notes_to_json/train.jsonl"),
                        heldout=str(REPO / "data/notes_to_json/heldout.jsonl"),
                        task_metric="field_f1"),
        training=TrainingConfig(micro_batch_size=4, seed=42, adapter=args.adapter,
                                precision=args.precision),
        cpus=args.threads,
        device=args.device,
        gpus=1.0 if args.device.startswith("cuda") else 0.0,
    )  # fmt: skip
    result: dict[str, Any] = {
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
    add_mfu(result, model_path=model, peak=peak_tflops(args.device, args.peak_tflops))
    result["settings"] = {
        "model": args.model,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "micro_batch_size": 4,
        "device": torch.cuda.get_device_name(args.device) if spec.gpus else "cpu",
        "adapter": args.adapter,
        "precision": args.precision,
        **HPARAMS,
    }
    return emit(result, args.out)


def add_mfu(result: dict[str, Any], *, model_path: Path, peak: float | None) -> None:
    """Each run's MFU: tokens/s x 4N FLOPs over the peak (left out without a known peak)."""
    from trainers.memory import weight_shapes

    parameters = sum(math.prod(shape) for shape in weight_shapes(model_path).values())
    result["base_parameters"] = parameters
    result["peak_tflops"] = peak
    if peak is None:
        return
    for run in result.values():
        if isinstance(run, dict) and "tokens_per_second" in run:
            run["mfu"] = run["tokens_per_second"] * 4 * parameters / (peak * 1e12)


if __name__ == "__main__":
    main()
