"""One trial on a tiny in-process Llama with real PEFT: what trains, what is saved, how it resumes."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from sweeps.config import DataConfig, HeldoutEval, Hyperparameters, TrainingConfig
from trainers.checkpoint import (
    ADAPTER_DIR,
    MANIFEST_FILE,
    TENSORS_FILE,
    checkpoint_problem,
    load_checkpoint,
)
from trainers.lora_trial import collate, forward_loss, run_lora_trial, rung_steps, setup, train
from trainers.spec import TrialSpec

# make_spec's training values, so a spec and these knobs agree
HPARAMS = Hyperparameters(
    learning_rate=5e-3, lora_r=4, lora_alpha=8, num_epochs=2, sequence_len=128, lora_dropout=0.1,
    weight_decay=0.0, warmup_ratio=0.1, micro_batch_size=4, gradient_accumulation_steps=1,
    lora_target_modules=("q_proj", "v_proj"),
)  # fmt: skip


def knobs(**changes: object) -> Hyperparameters:
    """HPARAMS with some knobs changed, checked as a trial's are."""
    return Hyperparameters.model_validate({**HPARAMS.model_dump(), **changes})


def make_spec(model: Path, data: dict[str, Path], **training: Any) -> TrialSpec:
    return TrialSpec(
        model_path=str(model),
        data=DataConfig(train=str(data["train"]), heldout=str(data["heldout"]),
                        task_metric="field_f1"),
        training=TrainingConfig(**{"micro_batch_size": 4, "evals_per_epoch": 2, "seed": 5,
                                   "lora_target_modules": ["q_proj", "v_proj"], **training}),
        evaluation=HeldoutEval(max_new_tokens=8, batch_size=12),
    )  # fmt: skip


class Recorder:
    def __init__(self, crash_after: int | None = None) -> None:
        self.metrics: list[dict[str, float]] = []
        self.checkpoints: list[Path] = []
        self.crash_after = crash_after

    def __call__(self, metrics: dict[str, float], checkpoint: Path) -> None:
        self.metrics.append(metrics)
        self.checkpoints.append(checkpoint)
        if self.crash_after is not None and len(self.metrics) == self.crash_after:
            raise RuntimeError("worker killed")


def adapter_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / ADAPTER_DIR / "adapter_model.safetensors"))


def test_rung_plan() -> None:
    assert rung_steps(10, 2, 2) == [5, 10, 15, 20]
    assert rung_steps(3, 1, 4) == [1, 2, 3]  # never more rungs than steps
    assert rung_steps(7, 1, 1) == [7]


def test_lora_weights_train_and_base_weights_do_not(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    recipe = setup(make_spec(tiny_model, small_data), HPARAMS)
    named = dict(recipe.model.named_parameters())
    lora = {k: v.detach().clone() for k, v in named.items() if "lora_" in k}
    base = {k: v.detach().clone() for k, v in named.items() if "lora_" not in k}
    assert all(not named[k].requires_grad for k in base)
    # r * (in + out) per adapted projection, q_proj and v_proj in 2 layers (hidden 64, kv dim 32)
    expected = 2 * (4 * (64 + 64) + 4 * (64 + 32))
    assert sum(v.numel() for v in lora.values()) == expected
    record = Recorder()
    final = train(recipe, report=record, workdir=tmp_path)
    after = dict(recipe.model.named_parameters())
    assert all(torch.equal(after[k], v) for k, v in base.items())
    changed = [k for k, v in lora.items() if not torch.equal(after[k], v)]
    assert len(changed) == len(lora)
    assert [m["rung"] for m in record.metrics] == [1.0, 2.0, 3.0, 4.0]
    assert final["final_rung"] == 1.0 and record.metrics[0]["final_rung"] == 0.0
    assert record.metrics[-1]["heldout/loss"] < record.metrics[0]["heldout/loss"]
    assert final["tokens_trained"] > 0 and final["train/tokens_per_second"] > 0


def test_checkpoint_is_a_peft_adapter_that_loads(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    record = Recorder()
    run_lora_trial(
        make_spec(tiny_model, small_data),
        knobs(num_epochs=1),
        report=record,
        workdir=tmp_path,
    )
    last = record.checkpoints[-1]
    config = json.loads((last / ADAPTER_DIR / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    predictions = [json.loads(x) for x in (last / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 12 and {"prompt", "reference", "prediction", "score"} <= set(
        predictions[0]
    )
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), last / ADAPTER_DIR
    )
    loaded = {k: v for k, v in model.state_dict().items() if "lora_B" in k}
    assert loaded and any(v.abs().sum() > 0 for v in loaded.values())  # B starts at zero


def test_resumed_trial_matches_an_uninterrupted_one(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    spec = make_spec(tiny_model, small_data)
    whole = Recorder()
    run_lora_trial(spec, HPARAMS, report=whole, workdir=tmp_path / "whole")

    crashed = Recorder(crash_after=2)
    with pytest.raises(RuntimeError, match="worker killed"):
        run_lora_trial(spec, HPARAMS, report=crashed, workdir=tmp_path / "crashed")
    resumed = Recorder()
    run_lora_trial(
        spec,
        HPARAMS,
        report=resumed,
        workdir=tmp_path / "resumed",
        resume_from=crashed.checkpoints[-1],
    )

    assert [m["step"] for m in resumed.metrics] == [m["step"] for m in whole.metrics[2:]]
    # the resumed trial's cost counts on from its checkpoint's (setup included)
    assert resumed.metrics[0]["cost/wall_seconds"] > crashed.metrics[1]["cost/wall_seconds"]
    expected, got = adapter_tensors(whole.checkpoints[-1]), adapter_tensors(resumed.checkpoints[-1])
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)
    assert resumed.metrics[-1]["tokens_trained"] == whole.metrics[-1]["tokens_trained"]


def test_a_trial_killed_after_its_last_report_reports_it_again(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    """Restarted from its final checkpoint, a trial has nothing left to train: it reports the
    final rung again (the driver logs each step once), so Ray does not end it on a result that
    lacks it, which read as stopped early (test_chaos met this)."""
    spec = make_spec(tiny_model, small_data)
    whole = Recorder()
    final = run_lora_trial(spec, HPARAMS, report=whole, workdir=tmp_path / "whole")
    assert final["final_rung"] == 1.0
    again = Recorder()
    returned = run_lora_trial(spec, HPARAMS, report=again, workdir=tmp_path / "again",
                              resume_from=whole.checkpoints[-1])  # fmt: skip
    assert again.metrics == [whole.metrics[-1]] and returned == whole.metrics[-1]


def test_load_checkpoint_restores_progress(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    spec = make_spec(tiny_model, small_data)
    first = Recorder(crash_after=1)
    with pytest.raises(RuntimeError):
        run_lora_trial(spec, HPARAMS, report=first, workdir=tmp_path)
    recipe = setup(spec, HPARAMS)
    load_checkpoint(recipe, first.checkpoints[0])
    assert recipe.progress.step == int(first.metrics[0]["step"]) and recipe.progress.rung == 1


def test_packed_batch_has_the_same_loss_as_a_padded_one(tiny_model: Path, small_data: dict) -> None:
    recipe = setup(make_spec(tiny_model, small_data), HPARAMS)
    recipe.model.eval()
    examples = recipe.train_set[:4]
    targets = sum(sum(1 for x in e.labels[1:] if x != -100) for e in examples)
    n = torch.tensor(targets)
    with torch.no_grad():
        packed = forward_loss(
            recipe.model, collate(examples, pack=True, pad_id=0, device="cpu"), num_items=n
        )
        padded = forward_loss(
            recipe.model, collate(examples, pack=False, pad_id=0, device="cpu"), num_items=n
        )
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    assert collate(examples, pack=True, pad_id=0, device="cpu")["input_ids"].numel() == sum(
        len(e) for e in examples
    )


def test_head_on_responses_only_gives_the_full_forward_loss(
    tiny_model: Path, small_data: dict
) -> None:
    from evals.heldout import response_token_loss

    recipe = setup(make_spec(tiny_model, small_data), HPARAMS)
    recipe.model.eval()
    batch = collate(recipe.train_set[:4], pack=False, pad_id=0, device="cpu")
    with torch.no_grad():
        fast, count = response_token_loss(recipe.model, batch)
        logits = recipe.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
        full = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            batch["labels"][:, 1:].reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-4)
    assert count == int((batch["labels"][:, 1:] != -100).sum())


def test_a_damaged_checkpoint_is_told_from_an_intact_one(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    record = Recorder()
    run_lora_trial(make_spec(tiny_model, small_data), knobs(num_epochs=1),
                   report=record, workdir=tmp_path / "trial")  # fmt: skip
    intact = record.checkpoints[-1]
    assert checkpoint_problem(intact) is None
    manifest = json.loads((intact / MANIFEST_FILE).read_text())["files"]
    assert f"{ADAPTER_DIR}/adapter_model.safetensors" in manifest and TENSORS_FILE in manifest

    def damaged(name: str, damage: object) -> str | None:
        copy = tmp_path / name
        shutil.copytree(intact, copy)
        damage(copy)  # type: ignore[operator]
        return checkpoint_problem(copy)

    weights = f"{ADAPTER_DIR}/adapter_model.safetensors"

    def truncate(d: Path) -> None:
        data = (d / weights).read_bytes()
        (d / weights).write_bytes(data[: len(data) // 2])

    def flip_a_byte(d: Path) -> None:
        data = bytearray((d / TENSORS_FILE).read_bytes())
        data[-10] ^= 0xFF
        (d / TENSORS_FILE).write_bytes(bytes(data))

    assert "cut short" in str(damaged("no-manifest", lambda d: (d / MANIFEST_FILE).unlink()))
    assert f"{weights} has" in str(damaged("truncated", truncate))
    assert f"{TENSORS_FILE} does not match its sha256" == damaged("flipped", flip_a_byte)
    assert f"{weights} is missing" == damaged("missing", lambda d: (d / weights).unlink())


def test_gradient_checkpointing_trains_the_same_as_without(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    """Recomputing activations in the backward pass changes memory, not the numbers."""
    plain, checkpointed = Recorder(), Recorder()
    hparams = knobs(num_epochs=1)
    run_lora_trial(make_spec(tiny_model, small_data), hparams, report=plain,
                   workdir=tmp_path / "plain")  # fmt: skip
    spec = make_spec(tiny_model, small_data, gradient_checkpointing=True)
    run_lora_trial(spec, hparams, report=checkpointed, workdir=tmp_path / "checkpointed")
    for a, b in zip(plain.metrics, checkpointed.metrics, strict=True):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
        assert b["heldout/loss"] == pytest.approx(a["heldout/loss"], rel=1e-5)


def test_bf16_mixed_precision_trains_on_cpu(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    """bf16 base weights and autocast: the loss stays finite and close to fp32's, and the LoRA
    weights stay fp32 (PEFT keeps adapters in full precision)."""
    fp32, bf16 = Recorder(), Recorder()
    hparams = knobs(num_epochs=1)
    run_lora_trial(make_spec(tiny_model, small_data, precision="fp32"), hparams, report=fp32,
                   workdir=tmp_path / "fp32")  # fmt: skip
    spec = make_spec(tiny_model, small_data, precision="bf16")
    run_lora_trial(spec, hparams, report=bf16, workdir=tmp_path / "bf16")
    assert bf16.metrics[-1]["heldout/loss"] == pytest.approx(fp32.metrics[-1]["heldout/loss"],
                                                             rel=0.02)  # fmt: skip
    assert bf16.metrics[-1]["train/loss"] != fp32.metrics[-1]["train/loss"]  # it did run in bf16
    weights = adapter_tensors(bf16.checkpoints[-1])
    assert weights and all(t.dtype == torch.float32 for t in weights.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_trains_a_4bit_base_on_cuda(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    """QLoRA: the base in NF4 with double quantisation, a paged 8-bit AdamW, gradient
    checkpointing; the adapter trains and resumes like a LoRA one."""
    spec = make_spec(tiny_model, small_data, adapter="qlora", precision="bf16",
                     optimizer="paged_adamw_8bit", gradient_checkpointing=True,
                     ).model_copy(update={"device": "cuda"})  # fmt: skip
    record = Recorder()
    recipe = setup(spec, HPARAMS)
    quantized = [m for m in recipe.model.modules() if type(m).__name__ == "Linear4bit"]
    assert quantized, "the base model is not 4-bit"
    run_lora_trial(spec, HPARAMS, report=record, workdir=tmp_path)
    assert all(math.isfinite(m["train/loss"]) for m in record.metrics)
    assert record.metrics[-1]["train/loss"] < record.metrics[0]["train/loss"]


def test_all_linear_puts_lora_on_every_linear_layer(tiny_model: Path, small_data: dict) -> None:
    """`lora_target_modules: [all-linear]` (what preflight accepts, and sweep init may write)
    reaches PEFT as its shorthand, not as a module name."""
    from trainers.lora_trial import build_lora_model

    spec = make_spec(tiny_model, small_data, lora_target_modules=["all-linear"])
    model = build_lora_model(spec, Hyperparameters.from_trial(HPARAMS.model_dump(
        exclude={"lora_target_modules"}), training=spec.training))  # fmt: skip
    adapted = {n.rsplit(".lora_A", 1)[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters()
               if ".lora_A" in n}  # fmt: skip
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def adapted_layers(model: torch.nn.Module) -> set[str]:
    return {n.rsplit(".lora_A", 1)[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters()
            if ".lora_A" in n}  # fmt: skip


def test_the_attention_preset_adapts_the_attention_projections_only(
    tiny_model: Path, small_data: dict
) -> None:
    """`attention` is resolved on the loaded model: the linear layers inside its attention
    blocks (here q, k, v and o), none of the MLP's."""
    from trainers.lora_trial import build_lora_model

    model = build_lora_model(
        make_spec(tiny_model, small_data), knobs(lora_target_modules=["attention"])
    )
    assert adapted_layers(model) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_the_default_targets_every_linear_layer() -> None:
    assert TrainingConfig().lora_target_modules == ["all-linear"]


def test_a_trials_searched_training_knobs_reach_the_recipe(
    tiny_model: Path, small_data: dict
) -> None:
    """Searched micro-batch, accumulation and target set (a trial's hyperparameters) replace the
    spec's fixed ones for that trial: the steps per epoch and the adapted layers follow."""
    spec = make_spec(tiny_model, small_data)
    searched = knobs(micro_batch_size=2, gradient_accumulation_steps=3,
                     lora_target_modules="attention")  # fmt: skip
    recipe = setup(spec, searched)
    rows = len(recipe.train_set)
    assert recipe.spec.training.micro_batch_size == 2
    assert recipe.steps_per_epoch == math.ceil(rows / 6)
    assert adapted_layers(recipe.model) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    plain = setup(spec, HPARAMS)
    assert plain.steps_per_epoch == math.ceil(rows / 4)
    assert adapted_layers(plain.model) == {"q_proj", "v_proj"}


# --------------------------------------------------------------------------- PEFT's variants
def lora_layers(model: torch.nn.Module) -> list[Any]:
    """The adapted projections (PEFT LoraLayer modules), in model order."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def base_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


VARIANTS = {
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "gaussian": {"init_lora_weights": "gaussian"},
    "pissa": {"init_lora_weights": "pissa"},
    "olora": {"init_lora_weights": "olora"},
    "loraplus": {"loraplus_lr_ratio": 16.0},
    "loraplus-sgd": {"loraplus_lr_ratio": 16.0, "optimizer": "sgd"},
}


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_each_peft_variant_trains(
    tiny_model: Path, small_data: dict, tmp_path: Path, variant: dict[str, object]
) -> None:
    record = Recorder()
    run_lora_trial(make_spec(tiny_model, small_data, **variant), knobs(num_epochs=1),
                   report=record, workdir=tmp_path)  # fmt: skip
    losses = [m["train/loss"] for m in record.metrics]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], losses
    assert record.metrics[-1]["heldout/loss"] < record.metrics[0]["heldout/loss"] + 1e-3


def test_rslora_scales_by_alpha_over_sqrt_r(tiny_model: Path, small_data: dict) -> None:
    from trainers.lora_trial import build_lora_model

    plain = build_lora_model(make_spec(tiny_model, small_data), HPARAMS)
    stable = build_lora_model(make_spec(tiny_model, small_data, use_rslora=True), HPARAMS)
    assert stable.peft_config["default"].use_rslora is True
    assert {layer.scaling["default"] for layer in lora_layers(plain)} == {8 / 4}  # alpha/r
    assert {layer.scaling["default"] for layer in lora_layers(stable)} == {8 / 4**0.5}


def test_dora_trains_and_saves_a_magnitude_vector_per_layer(
    tiny_model: Path, small_data: dict, tmp_path: Path
) -> None:
    recipe = setup(make_spec(tiny_model, small_data, use_dora=True), knobs(num_epochs=1))
    named = dict(recipe.model.named_parameters())
    magnitudes = {k: v.detach().clone() for k, v in named.items() if "lora_magnitude_vector" in k}
    # one per adapted projection, one entry per output feature: q_proj 64, v_proj 32 (kv dim)
    assert sorted(v.numel() for v in magnitudes.values()) == [32, 32, 64, 64]
    assert all(named[k].requires_grad for k in magnitudes)
    record = Recorder()
    train(recipe, report=record, workdir=tmp_path)
    saved = adapter_tensors(record.checkpoints[-1])
    saved_magnitudes = {k: v for k, v in saved.items() if k.endswith("lora_magnitude_vector")}
    assert len(saved_magnitudes) == 4
    assert all(not torch.equal(named[k], v) for k, v in magnitudes.items())  # they trained
    for key, value in saved_magnitudes.items():
        torch.testing.assert_close(value, named[f"{key}.default.weight"].detach())


def test_gaussian_init_draws_a_from_a_normal_of_std_one_over_r(
    tiny_model: Path, small_data: dict
) -> None:
    """PEFT's default A is Kaiming-uniform, within 1/sqrt(fan_in); gaussian A ~ N(0, 1/r).
    B starts at zero in both, so the adapter is a no-op before training."""
    from trainers.lora_trial import build_lora_model

    default = lora_layers(build_lora_model(make_spec(tiny_model, small_data), HPARAMS))
    gaussian = lora_layers(build_lora_model(
        make_spec(tiny_model, small_data, init_lora_weights="gaussian"), HPARAMS))  # fmt: skip
    for layers in (default, gaussian):
        assert all(not layer.lora_B["default"].weight.any() for layer in layers)
    default_a, gaussian_a = (torch.cat([m.lora_A["default"].weight.detach().flatten() for m in layers])
                             for layers in (default, gaussian))  # fmt: skip
    assert default_a.abs().max() <= 1 / 64**0.5  # fan_in = hidden size 64
    assert float(gaussian_a.std()) == pytest.approx(1 / 4, rel=0.1)  # r = 4
    assert gaussian_a.abs().max() > 1 / 64**0.5


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_and_olora_move_part_of_each_weight_into_the_adapter(
    tiny_model: Path, small_data: dict, init: str
) -> None:
    """PiSSA: A and B are the top-r singular triplets of W, the base keeps the residual
    W - scaling * B @ A (so the model is unchanged at init); OLoRA the same with W's QR."""
    from transformers import AutoModelForCausalLM

    from trainers.lora_trial import build_lora_model

    original = dict(AutoModelForCausalLM.from_pretrained(tiny_model).named_parameters())
    model = build_lora_model(make_spec(tiny_model, small_data, init_lora_weights=init), HPARAMS)
    assert model.peft_config["default"].init_lora_weights == init  # the exact SVD for pissa
    for name, module in model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        residual = module.get_base_layer().weight
        weight = original[name.removeprefix("base_model.model.") + ".weight"]
        assert b.abs().sum() > 0 and not torch.allclose(residual, weight)
        torch.testing.assert_close(residual + module.scaling["default"] * b @ a, weight,
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
        if init == "pissa":  # the residual keeps W's singular values from the (r+1)-th on
            kept = torch.linalg.svdvals(weight.detach())[4:]
            torch.testing.assert_close(torch.linalg.svdvals(residual.detach())[: len(kept)], kept,
                                       rtol=1e-4, atol=1e-5)  # fmt: skip
        else:  # B is the first r columns of Q: orthonormal
            torch.testing.assert_close(b.T @ b, torch.eye(4), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "variant",
    [{"init_lora_weights": "pissa", "use_rslora": True}, {"init_lora_weights": "olora"}],
    ids=["pissa", "olora"],
)
def test_a_pissa_or_olora_checkpoint_is_a_plain_lora_for_the_original_base(
    tiny_model: Path, small_data: dict, tmp_path: Path, variant: dict[str, object]
) -> None:
    """Promote, compare, export and the finalists' benchmarks put a checkpoint's adapter on the
    base as it was, several adapters in turn on one loaded base: the adapter is saved converted
    (rank 2r: B A - B0 A0), so it gives the trained model there and leaves the base untouched."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    recipe = setup(make_spec(tiny_model, small_data, **variant), knobs(num_epochs=1))
    record = Recorder()
    train(recipe, report=record, workdir=tmp_path)
    adapter = record.checkpoints[-1] / ADAPTER_DIR
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True
    assert recipe.model.peft_config["default"].r == 4  # the training model's own is unchanged
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    loaded = PeftModel.from_pretrained(base, adapter).eval()
    batch = collate(recipe.train_set[:4], pack=False, pad_id=0, device="cpu")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        trained, again = recipe.model.eval()(**inputs).logits, loaded(**inputs).logits
        bare = loaded.base_model.unload()
        untouched = bare(**inputs).logits
    torch.testing.assert_close(again, trained, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in bare.state_dict().items())
    assert not torch.allclose(trained, untouched, atol=1e-4)  # the adapter did change the model


@pytest.mark.parametrize("optimizer", ["adamw_torch", "sgd"])
def test_loraplus_gives_b_matrices_ratio_times_the_learning_rate(
    tiny_model: Path, small_data: dict, optimizer: str
) -> None:
    hparams = knobs(weight_decay=0.01)
    spec = make_spec(tiny_model, small_data, loraplus_lr_ratio=16.0, optimizer=optimizer)
    recipe = setup(spec, hparams)
    names = {id(p): n for n, p in recipe.model.named_parameters()}
    groups = [g for g in recipe.optimizer.param_groups if g["params"]]
    assert len(groups) == 2
    a_group, b_group = groups
    assert sorted(names[id(p)].split(".")[-3] for p in a_group["params"]) == ["lora_A"] * 4
    assert sorted(names[id(p)].split(".")[-3] for p in b_group["params"]) == ["lora_B"] * 4
    assert a_group["initial_lr"] == 5e-3 and b_group["initial_lr"] == pytest.approx(16 * 5e-3)
    assert a_group["weight_decay"] == b_group["weight_decay"] == 0.01
    kind = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    assert type(recipe.optimizer) is kind
    if optimizer == "sgd":
        assert a_group["momentum"] == b_group["momentum"] == 0.9
    plain = setup(make_spec(tiny_model, small_data, optimizer=optimizer), hparams)
    assert [len(g["params"]) for g in plain.optimizer.param_groups] == [8]  # one group, as before


@pytest.mark.parametrize("variant", [
    {"use_rslora": True, "init_lora_weights": "pissa", "loraplus_lr_ratio": 4.0},
    {"use_dora": True, "init_lora_weights": "gaussian", "loraplus_lr_ratio": 4.0},
], ids=["rslora-pissa-loraplus", "dora-gaussian-loraplus"])  # fmt: skip
def test_a_trial_with_the_variants_resumes_exactly(
    tiny_model: Path, small_data: dict, tmp_path: Path, variant: dict[str, object]
) -> None:
    """A restart from a checkpoint (PiSSA's init run again and its adapter as trained, not as
    saved for other bases; LoRA+'s parameter groups) ends where the uninterrupted trial does."""
    spec = make_spec(tiny_model, small_data, **variant)
    whole, crashed, resumed = Recorder(), Recorder(crash_after=2), Recorder()
    run_lora_trial(spec, HPARAMS, report=whole, workdir=tmp_path / "whole")
    with pytest.raises(RuntimeError, match="worker killed"):
        run_lora_trial(spec, HPARAMS, report=crashed, workdir=tmp_path / "crashed")
    run_lora_trial(spec, HPARAMS, report=resumed, workdir=tmp_path / "resumed",
                   resume_from=crashed.checkpoints[-1])  # fmt: skip
    expected, got = adapter_tensors(whole.checkpoints[-1]), adapter_tensors(resumed.checkpoints[-1])
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)
