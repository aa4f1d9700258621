"""Quality checks: empty or very short responses, a prompt that is empty or equals its response,
and rows longer than ``max_seq_len`` tokens under the model's own tokenizer and template. (Rows
missing a field are rejected when read; label counts are the split's.)"""

from __future__ import annotations

from typing import Any

from sweeps.prepare._records import Record, StepResult


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def row_problem(record: Record, *, min_response_chars: int) -> str | None:
    """What is wrong with one row, or None."""
    response = record.response.strip()
    if not response:
        return "empty response"
    if len(response) < min_response_chars:
        return f"response shorter than {min_response_chars} characters"
    if record.messages is not None:
        if not record.prompt.strip():
            return "empty instruction"
        if _folded(record.prompt) == _folded(response):
            return "instruction equals its response"
    return None


def token_lengths(records: list[Record], tokenizer: Any, *, template: str) -> list[int]:
    """Each row's length in tokens, as the trainer tokenizes it (template included)."""
    from trainers.data import Example
    from trainers.tokenize import resolve_template, tokenize_examples

    examples = [Example(messages=tuple(r.messages), row=r.row) if r.messages else
                Example(text=r.text, row=r.row) for r in records]  # fmt: skip
    rendered = tokenize_examples(examples, tokenizer, resolve_template(tokenizer, template))
    return [len(t.input_ids) for t in rendered]


def quality(
    records: list[Record], *, min_response_chars: int, max_seq_len: int | None,
    tokenizer: Any = None, template: str = "auto", drop: bool = True,
) -> tuple[list[Record], StepResult]:  # fmt: skip
    result = StepResult("quality", rows_in=len(records))
    problems = [row_problem(r, min_response_chars=min_response_chars) for r in records]
    if tokenizer is not None and max_seq_len is not None:
        lengths = token_lengths(records, tokenizer, template=template)
        problems = [p or (f"{n} tokens, over max_seq_len {max_seq_len}" if n > max_seq_len else
                    None) for p, n in zip(problems, lengths, strict=True)]  # fmt: skip
    out = []
    for record, problem in zip(records, problems, strict=True):
        if problem is None:
            out.append(record)
            continue
        result.count(f"over max_seq_len {max_seq_len}" if "tokens, over" in problem else problem)
        if drop:
            result.removed.append((record, problem))
        else:
            out.append(record)
            result.changed.append((record, record))
    result.rows_out = len(out)
    return out, result
