"""Templates and response-only labels, on a tokenizer trained in-process."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_jsonl
from trainers.data import load_examples
from trainers.models import load_tokenizer
from trainers.tokenize import (
    IGNORE_INDEX,
    generation_prompt,
    resolve_template,
    tokenize_examples,
    truncate,
)


def labelled_text(tokenizer, tokenized) -> str:  # type: ignore[no-untyped-def]
    return tokenizer.decode(
        [
            t
            for t, label in zip(tokenized.input_ids, tokenized.labels, strict=True)
            if label != IGNORE_INDEX
        ]
    )


def test_chat_template_labels_only_the_assistant_turns(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_model)
    assert resolve_template(tokenizer, "auto") == "chat"
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Note: Ana, 30"},
                {"role": "assistant", "content": '{"name": "Ana"}'},
                {"role": "user", "content": "Again"},
                {"role": "assistant", "content": '{"age": 30}'},
            ]
        }
    ]
    [example] = load_examples(write_jsonl(tmp_path / "c.jsonl", rows))
    [tokenized] = tokenize_examples([example], tokenizer, "chat")
    assert len(tokenized.input_ids) == len(tokenized.labels)
    assert (
        labelled_text(tokenizer, tokenized) == '{"name": "Ana"}<|im_end|>\n{"age": 30}<|im_end|>\n'
    )
    full = tokenizer.apply_chat_template(list(example.messages), tokenize=False)
    assert (
        tokenizer.decode(tokenized.input_ids) == tokenizer.bos_token + full
        or tokenizer.decode(tokenized.input_ids) == full
    )


def test_alpaca_template_without_chat_template(tiny_model_plain: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_plain)
    assert resolve_template(tokenizer, "auto") == "alpaca"
    [example] = load_examples(
        write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Say hi", "output": "hi"}])
    )
    [tokenized] = tokenize_examples([example], tokenizer, "alpaca")
    assert labelled_text(tokenizer, tokenized) == "hi" + tokenizer.eos_token
    prompt = generation_prompt(example, tokenizer, "alpaca")
    assert prompt.endswith("### Instruction:\nSay hi\n\n### Response:\n")


def test_generation_prompt_is_the_prefix_before_the_response(
    tiny_model: Path, tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(tiny_model)
    [example] = load_examples(
        write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q?", "completion": "A."}])
    )
    prompt = generation_prompt(example, tokenizer, "chat")
    assert prompt.endswith("<|im_start|>assistant\n")
    [tokenized] = tokenize_examples([example], tokenizer, "chat")
    assert tokenizer.decode(tokenized.input_ids).startswith(prompt)


def test_plain_text_is_all_target(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_model)
    [example] = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"text": "plain words"}]))
    [tokenized] = tokenize_examples([example], tokenizer, "chat")
    assert labelled_text(tokenizer, tokenized).startswith("plain words")


def test_truncation_is_counted_and_empty_responses_dropped(
    tiny_model: Path, tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(tiny_model)
    rows = [
        {"prompt": "short", "completion": "ok"},
        {"prompt": "a much longer prompt " * 20, "completion": "the answer"},
        {"prompt": "medium prompt here", "completion": "a response that is long enough " * 5},
    ]
    examples = load_examples(write_jsonl(tmp_path / "t.jsonl", rows))
    tokenized = tokenize_examples(examples, tokenizer, "chat")
    prompt_len_3 = tokenized[2].labels.index(
        next(x for x in tokenized[2].labels if x != IGNORE_INDEX)
    )
    limit = max(len(tokenized[0]), prompt_len_3 + 3)  # row 3 keeps 3 response tokens
    assert (
        len(tokenized[1].input_ids) - len([x for x in tokenized[1].labels if x != IGNORE_INDEX])
        > limit
    )
    kept, stats = truncate(tokenized, limit, rows=[e.row for e in examples])
    assert stats.total == 3 and stats.truncated == 2
    assert stats.dropped == 1 and stats.rows_dropped == [2]  # row 2's response was cut away
    assert len(kept) == 2 and all(len(k) <= limit for k in kept)
    assert abs(stats.truncated_fraction - 2 / 3) < 1e-9
