"""A base model with named LoRA adapters, answering chat messages: what ``sweep serve`` serves
and what an in-process LLM judge asks.

The base model is loaded once. Each adapter is loaded onto it under its name (PEFT's
multi-adapter model); a request names the adapter to use, or ``base`` for none. Prompts are
rendered with the tokenizer's chat template (the Alpaca layout training uses when the tokenizer
has none). One request runs at a time: the active adapter is model state.

What cannot run is refused before any compute: a prompt longer than the model's context
(``prompt_tokens``, which never tokenizes a text that is sure to be too long). A generation ends
early, with ``GenerationStopped``, at its deadline or when the server stops (``Stop``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.tokenize import ALPACA_USER

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from evals.heldout import CausalLM

BASE_NAME = "base"
ROLES = ("system", "user", "assistant")


class ChatError(ValueError):
    """A request the model cannot answer (an unknown model name, malformed messages)."""


class ContextTooLong(ChatError):
    """A prompt (with the answer asked for) that does not fit the model's context."""


class GenerationStopped(RuntimeError):
    """A generation ended before its answer: past its deadline, or the server is stopping."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "deadline" | "shutdown"


@dataclass(frozen=True)
class Stop:
    """When a generation must end early: a monotonic-clock deadline, and an event set when the
    server stops."""

    deadline: float | None = None
    shutdown: threading.Event | None = None

    def reason(self) -> str | None:
        import time

        if self.shutdown is not None and self.shutdown.is_set():
            return "shutdown"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        return None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length


@dataclass(frozen=True)
class Sampling:
    """How to generate: greedy at temperature 0 (the default), else sampled."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


class ChatModel:
    """``complete(messages, model=NAME)``: NAME is ``base`` or one of the adapters' names."""

    def __init__(
        self,
        base: Path,
        adapters: Mapping[str, Path],
        *,
        trust_remote_code: bool = False,
        device: str | None = None,
    ) -> None:
        from trainers.models import load_causal_lm, load_tokenizer

        if BASE_NAME in adapters:
            raise ChatError(f"{BASE_NAME!r} names the base model; give the adapter another name")
        self.tokenizer: PreTrainedTokenizerBase = load_tokenizer(
            base, trust_remote_code=trust_remote_code
        )
        self.base_path = base
        device = device or default_device()
        model = load_causal_lm(base, trust_remote_code=trust_remote_code, device=device)
        self.model: CausalLM = _with_adapters(model, adapters)
        self.adapters = dict(adapters)
        self.device = device
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [BASE_NAME, *self.adapters]

    @property
    def context_tokens(self) -> int | None:
        """The model's context: prompt and answer together (its config's position limit)."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return int(limit) if isinstance(limit, int) and limit > 0 else None

    def prompt_tokens(self, prompt: str, *, limit: int) -> int:
        """The prompt's length in tokens, or ContextTooLong past ``limit``. A text whose bytes
        alone need more than ``limit`` tokens (no token is longer than ``max_token_bytes``) is
        refused without being tokenized: a 2 MB prompt costs nothing."""
        floor = -(-len(prompt.encode()) // self.max_token_bytes)  # the fewest tokens it can be
        if floor > limit:
            raise ContextTooLong(
                f"the prompt is at least {floor} tokens ({len(prompt)} "
                f"characters); at most {limit} fit"
            )
        count = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if count > limit:
            raise ContextTooLong(f"the prompt is {count} tokens; at most {limit} fit")
        return count

    @functools.cached_property
    def max_token_bytes(self) -> int:
        """The most bytes of text one token of the vocabulary stands for."""
        vocab = self.tokenizer.get_vocab()
        texts = self.tokenizer.batch_decode([[i] for i in vocab.values()])
        return max(1, *(len(t.encode()) for t in texts), *(len(t.encode()) for t in vocab))

    def weights_identity(self) -> str:
        """The base model's identity and each adapter's weights: what answers depend on."""
        import hashlib
        import json

        from trainers.models import model_identity

        digests = {
            n: hashlib.sha256((p / "adapter_model.safetensors").read_bytes()).hexdigest()
            for n, p in self.adapters.items()
        }
        return json.dumps([model_identity(self.base_path), digests], sort_keys=True)

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text, ending where the assistant's answer begins."""
        turns = check_messages(messages)
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(
                turns, tokenize=False, add_generation_prompt=True
            )
            return str(text)
        parts = []
        for turn in turns:
            if turn["role"] == "system":
                parts.append(turn["content"] + "\n\n")
            elif turn["role"] == "user":
                parts.append(ALPACA_USER.format(content=turn["content"]))
            else:
                parts.append(turn["content"] + "\n\n")
        return "".join(parts)

    def complete(
        self, messages: Sequence[Mapping[str, str]], *, model: str, sampling: Sampling = Sampling()
    ) -> Completion:
        """One answer to ``messages`` from ``model`` (``base`` or an adapter's name)."""
        if model not in self.names:
            raise ChatError(f"no model {model!r} here; served: {', '.join(self.names)}")
        prompt = self.render(messages)
        with self._lock:
            return self.generate(prompt, model=model, sampling=sampling)

    def generate(
        self, prompt: str, *, model: str, sampling: Sampling, stop: Stop = Stop()
    ) -> Completion:
        """The answer to a rendered prompt; the caller holds the model (one at a time: the active
        adapter is model state). Raises GenerationStopped when ``stop`` ends it first."""
        import contextlib

        import torch
        from transformers import StoppingCriteriaList

        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        ids = encoded["input_ids"].to(self.device)
        options = generation_options(self.tokenizer, sampling)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        if self.adapters and model != BASE_NAME:
            self.model.set_adapter(model)
        adapters_off = (
            self.model.disable_adapter()
            if self.adapters and model == BASE_NAME
            else contextlib.nullcontext()
        )
        early = _EndEarly(stop)
        with torch.inference_mode(), adapters_off:
            output = self.model.generate(
                input_ids=ids,
                attention_mask=encoded["attention_mask"].to(self.device),
                tokenizer=self.tokenizer,
                stopping_criteria=StoppingCriteriaList([early]),
                **options,
            )
        if early.reason is not None:
            raise GenerationStopped(early.reason)
        new = output[0, ids.shape[1] :].tolist()
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        stopped = bool(new) and new[-1] in eos
        text = str(self.tokenizer.decode(new, skip_special_tokens=True))
        text, cut = _cut_at_stop(text, sampling.stop)
        finish = "stop" if stopped or cut or len(new) < sampling.max_tokens else "length"
        return Completion(text, int(ids.shape[1]), len(new), finish)


class _EndEarly:
    """A transformers stopping criterion: ends the generation at ``stop``'s deadline or shutdown
    (checked after each token), and remembers why."""

    def __init__(self, stop: Stop) -> None:
        self.stop = stop
        self.reason: str | None = None

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object
    ) -> torch.Tensor:
        import torch

        self.reason = self.reason or self.stop.reason()
        done = self.reason is not None
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def default_device() -> str:
    """CUDA where there is a GPU (sweep serve, an in-process judge), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Messages as role/content dicts; a message of another role, or without text, is refused."""
    if not messages:
        raise ChatError("messages is empty")
    turns = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise ChatError(f"messages[{index}]: needs role system|user|assistant and text content")
        turns.append({"role": str(role), "content": content})
    return turns


def generation_options(tokenizer: PreTrainedTokenizerBase, sampling: Sampling) -> dict[str, object]:
    options: dict[str, object] = {
        "max_new_tokens": sampling.max_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if sampling.stop:  # generation ends at a stop string (cut off the text after it)
        options["stop_strings"] = [s for s in sampling.stop if s]
    if sampling.temperature > 0:
        options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return options


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text up to the first stop string (OpenAI's ``stop``), and whether one was found."""
    found = [text.index(s) for s in stop if s and s in text]
    return (text[: min(found)], True) if found else (text, False)


def _with_adapters(model: PreTrainedModel, adapters: Mapping[str, Path]) -> CausalLM:
    """The model with each adapter loaded under its name (the model itself without any)."""
    if not adapters:
        return model.eval()
    from peft import PeftModel

    names = list(adapters)
    peft_model = PeftModel.from_pretrained(model, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(str(adapters[name]), adapter_name=name)
    return peft_model.eval()
