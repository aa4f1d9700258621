"""``sweep export --merged``: one plain model directory that generates like base + adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from sweeps.cli.main import main
from tests.conftest import DATA
from trainers.models import load_causal_lm, load_tokenizer


def random_adapter(base: Path, out: Path) -> Path:
    """A LoRA with random A and B (PEFT's default B is zero: a no-op to merge)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)  # fmt: skip
    get_peft_model(load_causal_lm(base), config).save_pretrained(out)
    return out


def heldout_prompts(count: int) -> list[str]:
    rows = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()[:count]]
    return [row["instruction"] + "\n" + row.get("input", "") for row in rows]


def greedy_and_logits(model: Any, tokenizer: Any, prompts: list[str]) -> tuple[list[str], Any]:
    from evals.heldout import generate_greedy

    texts = generate_greedy(model, tokenizer, prompts, max_new_tokens=12, batch_size=4)
    batch = tokenizer(prompts[:1], return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    return texts, logits


def test_merged_model_loads_plainly_and_generates_like_base_plus_adapter(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = random_adapter(tiny_model, tmp_path / "adapter")
    out = tmp_path / "merged"
    assert main(["export", str(adapter), "--merged", str(out)]) == 0
    assert f"AutoModelForCausalLM.from_pretrained('{out}')" in capsys.readouterr().out
    assert not (out / "adapter_config.json").exists()  # plain weights, no PEFT needed
    assert json.loads((out / "lora_sweep_export.json").read_text())["adapter"] == str(adapter)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    prompts = heldout_prompts(4)
    merged_texts, merged_logits = greedy_and_logits(
        merged, AutoTokenizer.from_pretrained(out), prompts
    )
    tokenizer = load_tokenizer(tiny_model)
    tuned = PeftModel.from_pretrained(load_causal_lm(tiny_model), adapter).eval()
    tuned_texts, tuned_logits = greedy_and_logits(tuned, tokenizer, prompts)
    _, base_logits = greedy_and_logits(load_causal_lm(tiny_model).eval(), tokenizer, prompts)
    assert merged_texts == tuned_texts
    torch.testing.assert_close(merged_logits, tuned_logits, atol=1e-4, rtol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 1e-3  # the adapter is in the weights


def test_export_refuses_a_non_empty_target_and_a_non_adapter(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = random_adapter(tiny_model, tmp_path / "adapter")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("user data")
    assert main(["export", str(adapter), "--merged", str(taken)]) == 2
    assert "already exists and is not an empty directory" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert main(["export", str(tiny_model), "--merged", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tiny_model}: not a PEFT adapter directory (no adapter_config.json)"
    assert main(["export", "no-such-sweep", "--merged", str(tmp_path / "m"),
                 "--state-dir", str(tmp_path / "sweeps")]) == 2  # fmt: skip
    assert "neither an adapter directory, a sweep" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert not any(p.name.startswith(".m.") for p in tmp_path.iterdir())  # no staging left
