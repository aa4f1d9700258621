"""Quality checks: empty or very short responses, a prompt that is empty or equals its response,
and rows longer than ``max_seq_len`` tokens under the model's own tokenizer and template. (Rows
missing a field are rejected when read; label counts are the split's.)

A short response is a problem only where the task's answers are long: in a task of labels,
numbers, letters and Y/N answers, no row is removed for being short. With ``min_response_chars``
None (the default) the minimum is decided from the data: none when the median response is at
most ``SHORT_ANSWER_CHARS`` characters, else ``LONG_TASK_MIN_CHARS`` (a one-character response
among long ones; the console counts each, and ``--min-response-chars 0`` keeps them).
"""

from __future__ import annotations

from statistics import median
from typing import TYPE_CHECKING

from sweeps.prepare._records import Record, StepResult

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SHORT_ANSWER_CHARS = 16  # a median response this short: a short-answer task (labels, numbers)
LONG_TASK_MIN_CHARS = 2  # where answers are long, a 0-1 character response is flagged


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def response_floor(records: list[Record], requested: int | None) -> tuple[int, str]:
    """The minimum response length, and how it was chosen (said on the console)."""
    if requested is not None:
        return requested, f"min_response_chars {requested} (set)"
    lengths = [len(r.response.strip()) for r in records if r.response.strip()]
    middle = median(lengths) if lengths else 0
    if middle <= SHORT_ANSWER_CHARS:
        return 0, f"short answers (median {middle:g} characters): no minimum length"
    return LONG_TASK_MIN_CHARS, (
        f"long answers (median {middle:g} characters): responses under "
        f"{LONG_TASK_MIN_CHARS} characters flagged"
    )


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


def token_lengths(
    records: list[Record], tokenizer: PreTrainedTokenizerBase, *, template: str
) -> list[int]:
    """Each row's length in tokens, as the trainer tokenizes it (template included)."""
    from trainers.data import Example
    from trainers.tokenize import resolve_template, tokenize_examples

    examples = [
        Example(messages=tuple(r.messages), row=r.row)
        if r.messages
        else Example(text=r.text, row=r.row)
        for r in records
    ]
    rendered = tokenize_examples(examples, tokenizer, resolve_template(tokenizer, template))
    return [len(t.input_ids) for t in rendered]


def quality(
    records: list[Record],
    *,
    min_response_chars: int | None,
    max_seq_len: int | None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    template: str = "auto",
    drop: bool = True,
) -> tuple[list[Record], StepResult]:
    result = StepResult("quality", rows_in=len(records))
    floor, why = response_floor(records, min_response_chars)
    result.notes.append(why)
    problems = [row_problem(r, min_response_chars=floor) for r in records]
    if tokenizer is not None and max_seq_len is not None:
        lengths = token_lengths(records, tokenizer, template=template)
        problems = [
            p or (f"{n} tokens, over max_seq_len {max_seq_len}" if n > max_seq_len else None)
            for p, n in zip(problems, lengths, strict=True)
        ]
    out = []
    for record, problem in zip(records, problems, strict=True):
        if problem is None:
            out.append(record)
            continue
        key = f"over max_seq_len {max_seq_len}" if "tokens, over" in problem else problem
        result.count(key if drop else f"{key} (kept: --keep-flagged)")
        if drop:
            result.removed.append((record, problem))
        else:
            out.append(record)
            result.changed.append((record, record))
    result.rows_out = len(out)
    return out, result
