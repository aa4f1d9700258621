"""The held-out scorer: a model's loss on every held-out row and its task metric on the
generated ones. Every rung, the base model's yardstick, promote and compare score with it."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from evals.heldout import HeldoutScores, score_heldout
from trainers.data import Example, load_examples, split_heldout
from trainers.models import load_causal_lm, load_tokenizer
from trainers.spec import TrialSpec
from trainers.tokenize import Tokenized, generation_prompt, resolve_template, tokenize_examples

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_trial_examples(spec: TrialSpec) -> tuple[list[Example], list[Example]]:
    """Train and held-out examples: the held-out file, or a seeded split of the train file."""

    data = spec.data

    def load(path: str) -> list[Example]:
        return load_examples(
            Path(path),
            fmt=data.format,
            columns=data.columns,
            system_prompt=data.system_prompt,
            instruction=data.instruction,
            label_field=data.label_field,
        )

    train = load(data.train)
    if data.heldout:
        return train, load(data.heldout)
    return split_heldout(train, fraction=data.val_set_size, seed=data.split_seed)


@dataclass(frozen=True)
class HeldoutScorer:
    """The one held-out scorer: a model's loss on every held-out row and its task metric on the
    generated ones. Every rung, the base model's yardstick, promote and compare score with it."""

    spec: TrialSpec
    tokenizer: PreTrainedTokenizerBase
    template: str
    tokenized: list[Tokenized]  # every held-out row, for the loss
    prompts: list[str]  # the rows generated for the task metric (generation_samples of them)
    references: list[str]

    @classmethod
    def for_rows(
        cls,
        spec: TrialSpec,
        heldout: list[Example],
        *,
        tokenizer: PreTrainedTokenizerBase,
        template: str,
    ) -> HeldoutScorer:
        limit = spec.evaluation.generation_samples or len(heldout)
        generating = [e for e in heldout if not e.is_text][:limit]
        return cls(
            spec,
            tokenizer,
            template,
            tokenize_examples(heldout, tokenizer, template),
            [generation_prompt(e, tokenizer, template) for e in generating],
            [e.reference for e in generating],
        )

    def score(self, model: PreTrainedModel | PeftModel) -> HeldoutScores:
        evaluation = self.spec.evaluation
        return score_heldout(
            model,
            self.tokenizer,
            tokenized=self.tokenized,
            prompts=self.prompts,
            references=self.references,
            task_metric=self.spec.task_metric,
            batch_size=evaluation.batch_size,
            max_new_tokens=evaluation.max_new_tokens,
        )


def heldout_scorer(spec: TrialSpec) -> HeldoutScorer:
    """The scorer of the spec's held-out rows, with the base model's tokenizer and template."""
    tokenizer = load_tokenizer(Path(spec.model_path), trust_remote_code=spec.trust_remote_code)
    template = resolve_template(tokenizer, spec.data.template)
    _, heldout = load_trial_examples(spec)
    return HeldoutScorer.for_rows(spec, heldout, tokenizer=tokenizer, template=template)


def score_base_model(spec: TrialSpec) -> HeldoutScores:
    """The base model's held-out scores: the yardstick every trial is read against."""
    torch.set_num_threads(max(1, int(spec.cpus)))
    scorer = heldout_scorer(spec)
    model = load_causal_lm(
        Path(spec.model_path), trust_remote_code=spec.trust_remote_code, device=spec.device
    )
    scores = scorer.score(model)
    del model
    gc.collect()
    return scores
