"""Score a model (base, or base + LoRA) on the user's held-out set: loss, perplexity, task metric."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from evals import metric_keys as keys
from evals.metrics import exact_match, mean, score_items

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

# A causal LM: transformers' model for causal LM, or PEFT's PeftModel around one. Neither
# library's types describe it: transformers' PreTrainedModel has no generate() (its
# GenerationMixin is mixed into each architecture), PeftModel passes what it lacks on to the model
# it wraps, and scoring reads the wrapped model's decoder and head.
CausalLM = Any


class TokenizedRow(Protocol):
    """A tokenized example (trainers/tokenize.py's ``Tokenized``): labels -100 where no loss."""

    @property
    def input_ids(self) -> Sequence[int]: ...

    @property
    def labels(self) -> Sequence[int]: ...


class ScoredItem(TypedDict):
    """One generated held-out row and its scores."""

    prompt: str
    reference: str
    prediction: str
    score: float
    exact_match: float


@dataclass
class HeldoutScores:
    loss: float
    perplexity: float
    task_metric: str
    task_score: float
    exact_match: float
    items: list[ScoredItem] = field(default_factory=list)

    def as_metrics(self) -> dict[str, float]:
        out = {keys.HELDOUT_LOSS: self.loss, keys.HELDOUT_PERPLEXITY: self.perplexity}
        if self.items:
            out[keys.heldout(self.task_metric)] = self.task_score
            out[keys.HELDOUT_EXACT_MATCH] = self.exact_match
        return out


def pad_batch(examples: Sequence[TokenizedRow], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad tokenized examples (``input_ids``/``labels``) to the longest; labels pad to -100."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
        mask[row, : len(example.input_ids)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# Model types whose logits are exactly lm_head(last hidden state): no soft-capping or scaling.
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3"}


def response_token_loss(
    model: CausalLM, batch: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and how many there are.

    For plain-head models only the labelled positions go through the LM head: prompts are most
    of the tokens, and a 49k-vocabulary head is a fifth of the compute. Same loss, less work.
    ``use_cache=False`` matters for packed rows: with a KV cache, transformers ignores packed
    position ids and lets packed examples attend to each other.
    """
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if getattr(inner.config, "model_type", "") in PLAIN_HEAD_MODELS:
        decoder = inner.get_decoder() or inner.base_model  # transformers 4.56's can be None
        hidden = decoder(**inputs, use_cache=False).last_hidden_state[:, :-1]
        logits: torch.Tensor = inner.get_output_embeddings()(hidden[keep])
    else:
        logits = model(**inputs, use_cache=False).logits[:, :-1][keep]
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[keep], reduction="sum")
    return loss, int(keep.sum())


def heldout_loss(
    model: CausalLM, examples: Sequence[TokenizedRow], *, batch_size: int, pad_id: int
) -> float:
    """Mean cross-entropy over response tokens (teacher forcing), weighted by token."""
    import torch

    total, count = 0.0, 0
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = pad_batch(examples[start : start + batch_size], pad_id=pad_id)
            loss, items = response_token_loss(model, {k: v.to(device) for k, v in batch.items()})
            total += float(loss)
            count += items
    return total / max(count, 1)


def generate_greedy(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy completions for ``prompts``, batched with left padding."""
    import torch

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                batch = tokenizer(
                    prompts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                    return_token_type_ids=False,  # some tokenizers add them; generate refuses them
                ).to(device)
                generated = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                new_tokens = generated[:, batch["input_ids"].shape[1] :]
                outputs += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return outputs


def score_heldout(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    *,
    tokenized: Sequence[TokenizedRow],
    prompts: list[str],
    references: list[str],
    task_metric: str,
    batch_size: int,
    max_new_tokens: int,
) -> HeldoutScores:
    """Loss and perplexity on every held-out row; the task metric on ``prompts`` by generation."""
    loss = heldout_loss(model, tokenized, batch_size=batch_size, pad_id=tokenizer.pad_token_id)
    items: list[ScoredItem] = []
    task_score = exact = float("nan")
    if prompts:
        predictions = generate_greedy(
            model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        scores = score_items(predictions, references, task_metric)
        exacts = [exact_match(p, r) for p, r in zip(predictions, references, strict=True)]
        items = [
            {"prompt": p, "reference": r, "prediction": g, "score": s, "exact_match": e}
            for p, r, g, s, e in zip(prompts, references, predictions, scores, exacts, strict=True)
        ]
        task_score, exact = mean(scores), mean(exacts)
    return HeldoutScores(
        loss=loss,
        perplexity=math.exp(min(loss, 50.0)),
        task_metric=task_metric,
        task_score=task_score,
        exact_match=exact,
        items=items,
    )
