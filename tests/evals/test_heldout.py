"""Held-out scoring on a tiny model: the loss is the response-token cross-entropy, computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from evals.heldout import generate_greedy, heldout_loss, score_heldout
from tests.conftest import write_jsonl
from trainers.data import load_examples
from trainers.models import load_causal_lm, load_tokenizer
from trainers.tokenize import IGNORE_INDEX, generation_prompt, tokenize_examples


def test_heldout_loss_matches_a_hand_computation(tiny_model: Path, small_data: dict) -> None:
    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    tokenized = tokenize_examples(load_examples(small_data["heldout"]), tokenizer, "chat")
    batched = heldout_loss(model, tokenized, batch_size=5, pad_id=tokenizer.pad_token_id)
    total, count = 0.0, 0
    with torch.no_grad():
        for example in tokenized:  # one at a time: no padding at all
            logits = model(input_ids=torch.tensor([example.input_ids])).logits[0, :-1]
            labels = torch.tensor(example.labels[1:])
            keep = labels != IGNORE_INDEX
            total += float(
                torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")
            )
            count += int(keep.sum())
    assert math.isclose(batched, total / count, rel_tol=1e-5)


def test_greedy_generation_is_batch_invariant(tiny_model: Path, small_data: dict) -> None:
    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    prompts = [
        generation_prompt(e, tokenizer, "chat") for e in load_examples(small_data["heldout"])[:4]
    ]
    together = generate_greedy(model, tokenizer, prompts, max_new_tokens=6, batch_size=4)
    alone = [
        generate_greedy(model, tokenizer, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts
    ]
    assert together == alone
    assert tokenizer.padding_side == "right"  # restored after left-padded generation


def test_score_heldout_reports_every_item(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer, model = load_tokenizer(tiny_model), load_causal_lm(tiny_model)
    rows = [{"prompt": "Q", "completion": '{"a": 1}'}, {"prompt": "R", "completion": '{"b": 2}'}]
    examples = load_examples(write_jsonl(tmp_path / "h.jsonl", rows))
    scores = score_heldout(
        model,
        tokenizer,
        tokenized=tokenize_examples(examples, tokenizer, "chat"),
        prompts=[generation_prompt(e, tokenizer, "chat") for e in examples],
        references=[e.reference for e in examples],
        task_metric="field_f1",
        batch_size=2,
        max_new_tokens=4,
    )
    assert len(scores.items) == 2 and scores.task_score == 0.0  # random weights produce no JSON
    assert scores.perplexity == math.exp(scores.loss)
    assert set(scores.as_metrics()) == {
        "heldout/loss",
        "heldout/perplexity",
        "heldout/field_f1",
        "heldout/exact_match",
    }
