"""Render examples with a prompt template and tokenize them with the loss on responses only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trainers.data import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
ALPACA_USER = "### Instruction:\n{content}\n\n### Response:\n"


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TruncationStats:
    """How many examples max_seq_len cut, and how many lost their whole response."""

    total: int = 0
    truncated: int = 0
    dropped: int = 0
    rows_dropped: list[int] = field(default_factory=list)

    @property
    def truncated_fraction(self) -> float:
        return self.truncated / self.total if self.total else 0.0


def resolve_template(tokenizer: PreTrainedTokenizerBase, requested: str) -> str:
    """``auto`` means the model's chat template when it has one, else Alpaca-style."""
    if requested == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "alpaca"
    if requested == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("data.template is 'chat' but the tokenizer has no chat template")
    return requested


def render_segments(
    example: Example, tokenizer: PreTrainedTokenizerBase, template: str
) -> list[tuple[str, bool]]:
    """The example's text as (segment, is_target) pairs; targets are the assistant turns."""
    eos = tokenizer.eos_token or ""
    if example.text is not None:
        return [(example.text + eos, True)]
    if template == "chat":
        return _chat_segments(list(example.messages), tokenizer)
    segments: list[tuple[str, bool]] = []
    for message in example.messages:
        if message["role"] == "assistant":
            segments.append((message["content"] + eos, True))
            segments.append(("\n\n" if template == "alpaca" else "\n", False))
        elif message["role"] == "system":
            segments.append((message["content"] + "\n\n", False))
        elif template == "alpaca":
            segments.append((ALPACA_USER.format(content=message["content"]), False))
        else:
            segments.append((message["content"] + "\n", False))
    while segments and not segments[-1][1]:
        segments.pop()
    return segments


def _chat_segments(
    messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase
) -> list[tuple[str, bool]]:
    def render(turns: list[dict[str, str]], prompt: bool) -> str:
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt)
        return str(text)

    segments: list[tuple[str, bool]] = []
    covered = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(messages[:index], True)
        full = render(messages[: index + 1], False)
        if not prefix.startswith(covered) or not full.startswith(prefix):
            raise ValueError("the chat template does not render turns as prefixes of each other")
        segments.append((prefix[len(covered) :], False))
        segments.append((full[len(prefix) :], True))
        covered = full
    return [s for s in segments if s[0]]


def _bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """[bos] when the tokenizer normally starts sequences with it, else []."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    sample = tokenizer("x", add_special_tokens=True)["input_ids"]
    return [bos] if sample and sample[0] == bos else []


def tokenize_examples(
    examples: list[Example], tokenizer: PreTrainedTokenizerBase, template: str
) -> list[Tokenized]:
    """Tokenize every example (untruncated); labels are IGNORE_INDEX outside responses."""
    rendered = [render_segments(e, tokenizer, template) for e in examples]
    flat = [text for segments in rendered for text, _ in segments]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    bos = _bos_prefix(tokenizer)
    out, cursor = [], 0
    for segments in rendered:
        input_ids, labels = list(bos), [IGNORE_INDEX] * len(bos)
        for _, is_target in segments:
            piece = ids[cursor]
            cursor += 1
            input_ids += piece
            labels += piece if is_target else [IGNORE_INDEX] * len(piece)
        out.append(Tokenized(input_ids=input_ids, labels=labels))
    return out


def truncate(
    examples: list[Tokenized], max_len: int, *, rows: list[int] | None = None
) -> tuple[list[Tokenized], TruncationStats]:
    """Cut each example at max_len; drop (and count) those left with no response token."""
    stats = TruncationStats(total=len(examples))
    kept = []
    for index, example in enumerate(examples):
        if len(example) <= max_len:
            kept.append(example)
            continue
        stats.truncated += 1
        cut = Tokenized(example.input_ids[:max_len], example.labels[:max_len])
        if all(label == IGNORE_INDEX for label in cut.labels):
            stats.dropped += 1
            stats.rows_dropped.append(rows[index] if rows else index)
            continue
        kept.append(cut)
    return kept, stats


def generation_prompt(example: Example, tokenizer: PreTrainedTokenizerBase, template: str) -> str:
    """The text a model is given at generation time: everything before the last response."""
    segments = render_segments(example, tokenizer, template)
    last_target = max(i for i, (_, is_target) in enumerate(segments) if is_target)
    prompt = "".join(text for text, _ in segments[:last_target])
    if (
        _bos_prefix(tokenizer)
        and tokenizer.bos_token
        and not prompt.startswith(tokenizer.bos_token)
    ):
        prompt = tokenizer.bos_token + prompt
    return prompt
