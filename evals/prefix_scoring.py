"""Multiple-choice log-likelihoods with each question's context run once: its key/value cache
is reused for every choice, and a prefix consecutive questions share (a few-shot preamble) runs
once. ``evals/benchmarks.py`` (the one module that imports lm_eval) plugs this into lm-eval's
HFLM; here it is plain torch over the model that HFLM holds (``ScoringLM``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, TypeGuard

if TYPE_CHECKING:
    import torch
    from transformers import Cache


class ScoringLM(Protocol):
    """What scoring reads of lm-eval's HFLM: the model, its device, its batch size, and the
    cache hook its answers are recorded through."""

    batch_size: int
    device: torch.device | str
    model: torch.nn.Module
    cache_hook: CacheHook


class CacheHook(Protocol):
    """lm-eval's CacheHook: where an answer is recorded against its request."""

    def add_partial(self, attr: str, req: tuple[str, str], res: Answer) -> None: ...


# lm-eval's log-likelihood request: ((context, continuation) text, context tokens, continuation
# tokens); and its answer: the continuation's log-likelihood, and whether it is the greedy one
Request = tuple[tuple[str, str], list[int], list[int]]
Answer = tuple[float, bool]


def split_by_context(
    requests: list[Request], *, max_length: int
) -> tuple[list[int], dict[tuple[int, ...], list[int]]]:
    """The indices of requests longer than the model's context (or with a one-token context,
    which has no cache to share), and the others' indices grouped by their context tokens."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    long = []
    for i, (_, context, continuation) in enumerate(requests):
        if len(context) + len(continuation) > max_length + 1 or len(context) < 2:
            long.append(i)
        else:
            groups[tuple(context)].append(i)
    return long, groups


def score_sharing_prefixes(
    lm: ScoringLM, requests: list[Request], groups: dict[tuple[int, ...], list[int]]
) -> dict[int, Answer]:
    """Each grouped request's answer, a chunk of questions per forward pass (see
    :func:`_chunks`): the chunk's common prefix once (reused from the chunk before where they
    share it), the rest of each context once, then every question's choices after its own
    context."""
    import torch

    prefixes = _PrefixCache(lm)
    answers: dict[int, Answer] = {}
    one_token = {
        c for c, members in groups.items() if all(len(requests[i][2]) == 1 for i in members)
    }
    with torch.no_grad():
        for group, score in (
            (one_token, _score_next_tokens),
            (set(groups) - one_token, _score_chunk),
        ):
            for chunk in _chunks(
                sorted(group), budget=lm.batch_size * CONTEXT_TOKENS_PER_ROW, most=lm.batch_size
            ):
                members = [(list(context), groups[context]) for context in chunk]
                answers.update(score(lm, prefixes, members, requests))
    for i, answer in answers.items():
        lm.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
    return answers


def _score_next_tokens(
    lm: ScoringLM,
    prefixes: _PrefixCache,
    members: list[tuple[list[int], list[int]]],
    requests: list[Request],
) -> dict[int, Answer]:
    """Questions whose every choice is one token (MMLU's " A" to " D"): one pass over their
    whole contexts, and each choice read from the next-token distribution at its context's end
    (what lm-eval computes from the same context, once per choice)."""
    contexts = [context for context, _ in members]
    logits, ends = _run_contexts(lm, prefixes, contexts, whole=True)
    assert logits is not None  # a whole context always leaves a token to run
    answers: dict[int, Answer] = {}
    for q, (_, indices) in enumerate(members):
        last = logits[q, ends[q]].float()
        logprobs = last - last.logsumexp(-1)
        best = int(last.argmax(-1))
        for i in indices:
            token = requests[i][2][0]
            answers[i] = (float(logprobs[token]), best == token)
    return answers


# a chunk of questions holds at most batch_size x this many context tokens (padding included)
CONTEXT_TOKENS_PER_ROW = 256


SHARED_RUN = 16  # contexts that share this many leading tokens (a preamble) are chunked together


LONG_RUN = 64  # ... when there are enough of them, or the preamble is at least this long


CONTINUATION_TOKENS_PER_ROW = 32  # a pass over choices holds batch_size x this many tokens


def _chunks(
    contexts: list[tuple[int, ...]], *, budget: int, most: int
) -> Iterator[list[tuple[int, ...]]]:
    """Contexts in chunks for one forward pass each, batched by length to waste little padding.

    Contexts that share a preamble (TruthfulQA's six shots, an MMLU subject's heading) stay
    together, so the preamble runs once per chunk at most, and once per task where the chunk
    before shares it. Within a run, and among the contexts that share nothing, shorter ones come
    first; a chunk is cut where its padded size would pass ``budget`` tokens, or at ``most``
    questions (few enough that neighbours in length order pad each other little).
    """
    runs: list[list[tuple[int, ...]]] = []
    for context in sorted(contexts):
        if runs and _shared_length(list(runs[-1][0]), list(context)) >= SHARED_RUN:
            runs[-1].append(context)
        else:
            runs.append([context])
    kept = [
        run
        for run in runs
        if len(run) > 1
        and (len(run) >= most // 2 or _shared_length(list(run[0]), list(run[1])) >= LONG_RUN)
    ]
    loose = [context for run in runs if run not in kept for context in run]
    for run in [*kept, loose]:
        chunk: list[tuple[int, ...]] = []
        for context in sorted(run, key=len):
            if chunk and ((len(chunk) + 1) * len(context) > budget or len(chunk) == most):
                yield chunk
                chunk = []
            chunk.append(context)
        if chunk:
            yield chunk


def _score_chunk(
    lm: ScoringLM,
    prefixes: _PrefixCache,
    members: list[tuple[list[int], list[int]]],
    requests: list[Request],
) -> dict[int, Answer]:
    """One chunk of questions: their contexts' key/value cache (one pass), then their choices,
    ``batch_size`` rows a pass, each after its own question's context."""
    contexts = [context for context, _ in members]
    cache, mask = _contexts_cache(lm, prefixes, contexts)
    rows = [(q, i) for q, (_, indices) in enumerate(members) for i in indices]
    rows.sort(key=lambda row: len(requests[row[1]][2]))  # batched by length: little padding
    answers: dict[int, Answer] = {}
    for part in _row_batches(rows, requests, batch_size=lm.batch_size):
        scored = _score_continuations(
            lm, cache, mask, [(contexts[q], requests[i][2], q) for q, i in part]
        )
        answers.update(zip((i for _, i in part), scored, strict=True))
    return answers


def _row_batches(
    rows: list[tuple[int, int]], requests: list[Request], *, batch_size: int
) -> Iterator[list[tuple[int, int]]]:
    """Rows (sorted by length) in passes of at least ``batch_size`` rows: more where they are
    short (up to 4 x, within batch_size x CONTINUATION_TOKENS_PER_ROW tokens), as a pass of a
    few tokens a row costs about what one of many does."""
    budget = batch_size * CONTINUATION_TOKENS_PER_ROW
    part: list[tuple[int, int]] = []
    for row in rows:
        width = len(requests[row[1]][2])
        full = len(part) >= 4 * batch_size or (len(part) + 1) * width > budget
        if part and len(part) >= batch_size and full:
            yield part
            part = []
        part.append(row)
    if part:
        yield part


def _contexts_cache(
    lm: ScoringLM, prefixes: _PrefixCache, contexts: list[list[int]]
) -> tuple[Cache | None, torch.Tensor]:
    """The key/value cache of every context but its last token, one row per context, and its
    attention mask (0 over padding): see :func:`_run_contexts`."""
    cache, mask, _, _ = _contexts_pass(lm, prefixes, contexts, whole=False)
    return cache, mask


def _run_contexts(
    lm: ScoringLM, prefixes: _PrefixCache, contexts: list[list[int]], *, whole: bool
) -> tuple[torch.Tensor | None, list[int]]:
    """The logits of every position of the whole contexts (right-padded), and where each
    context's last token sits in them."""
    _, _, logits, common = _contexts_pass(lm, prefixes, contexts, whole=whole)
    return logits, [len(c) - common - 1 for c in contexts]


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    common = sequences[0]
    for sequence in sequences[1:]:
        common = common[: _shared_length(common, sequence)]
    return common


def _contexts_pass(
    lm: ScoringLM, prefixes: _PrefixCache, contexts: list[list[int]], *, whole: bool
) -> tuple[Cache | None, torch.Tensor, torch.Tensor | None, int]:
    """One pass over the contexts: their common prefix from ``prefixes`` (it always leaves each
    at least its last token), then the rest of each, right-padded. ``whole``: up to each
    context's last token, with every position's logits; else up to the token before, with
    no logits (the cache is what the choices need). Returns the cache, its attention mask (0
    over padding), the logits and the common prefix's length."""
    import torch

    common = _common_prefix([c[:-1] for c in contexts])
    heads = [c if whole else c[:-1] for c in contexts]
    past = prefixes.of(common) if common else None
    width = max(len(h) for h in heads) - len(common)
    prefix_mask = torch.ones((len(heads), len(common)), dtype=torch.long, device=lm.device)
    if past is not None:  # one row of the prefix per context
        past = _rows_of(past, torch.zeros(len(heads), dtype=torch.long, device=lm.device))
    if width == 0:
        return past, prefix_mask, None, len(common)
    rest = [h[len(common) :] for h in heads]
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rest], device=lm.device)
    rest_mask = torch.tensor(
        [[1] * len(r) + [0] * (width - len(r)) for r in rest], device=lm.device
    )
    mask = torch.cat([prefix_mask, rest_mask], dim=1)
    positions = torch.arange(len(common), len(common) + width, device=lm.device)
    out = lm.model(
        input_ids=ids,
        attention_mask=mask,
        past_key_values=past,
        use_cache=not whole,
        position_ids=positions.expand(len(heads), -1),
        **({} if whole else _head_kwargs(lm.model)),
    )
    if whole:
        return None, mask, out.logits, len(common)
    return out.past_key_values, mask, None, len(common)


def _rows_of(cache: Cache, rows: torch.Tensor) -> Cache:
    """A new cache made of ``rows`` of ``cache`` (which is left as it was): its layers are
    copied, and each layer's tensors are replaced (by indexing), never written in place."""
    import copy

    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]
    selected.batch_select_indices(rows)
    return selected


def _score_continuations(
    lm: ScoringLM,
    cache: Cache | None,
    mask: torch.Tensor,
    rows: list[tuple[list[int], list[int], int]],
) -> list[Answer]:
    """One pass over (context, continuation, context's row in ``cache``) rows: each row is the
    context's last token and the continuation (right-padded), after its context's cache."""
    import torch

    width = max(len(c) for _, c, _ in rows)
    ids = torch.tensor(
        [[ctx[-1], *c[:-1]] + [0] * (width - len(c)) for ctx, c, _ in rows], device=lm.device
    )
    which = torch.tensor([q for _, _, q in rows], device=lm.device)
    past = _rows_of(cache, which) if cache is not None else None
    own = torch.tensor(
        [[1] * len(c) + [0] * (width - len(c)) for _, c, _ in rows], device=lm.device
    )
    attention = torch.cat([mask.index_select(0, which), own], dim=1)
    starts = torch.tensor([len(ctx) - 1 for ctx, _, _ in rows], device=lm.device)
    positions = starts[:, None] + torch.arange(width, device=lm.device)[None, :]
    logits = lm.model(
        input_ids=ids,
        attention_mask=attention,
        past_key_values=past,
        use_cache=past is not None,
        position_ids=positions,
    ).logits
    answers = []
    for row, (_, cont, _) in zip(logits, rows, strict=True):
        picked = row[: len(cont)].float()  # padding is never normalised
        target = torch.tensor(cont, device=lm.device)
        chosen = picked.gather(-1, target[:, None]).squeeze(-1)
        total = float((chosen - picked.logsumexp(-1)).sum())  # = log_softmax's
        answers.append((total, bool((picked.argmax(-1) == target).all())))
    return answers


class _PrefixCache:
    """The key/value cache of the last context prefix run, reused for the next one."""

    def __init__(self, lm: ScoringLM) -> None:
        self.lm = lm
        self.prefix: list[int] = []
        self.cache: Cache | None = None

    def of(self, prefix: list[int]) -> Cache | None:
        """The key/value cache of ``prefix``, extending the last one from where they differ."""
        import torch

        last, cache = self.prefix, self.cache
        shared = _shared_length(last, prefix)
        if shared == 0 or not _croppable(cache):
            cache, shared = None, 0
        elif shared < len(last):
            cache.crop(shared - len(last))  # negative: drop that many tokens (any version)
        if shared < len(prefix):
            ids = torch.tensor([prefix[shared:]], device=self.lm.device)
            cache = self.lm.model(
                input_ids=ids, past_key_values=cache, use_cache=True, **_head_kwargs(self.lm.model)
            ).past_key_values
        self.prefix, self.cache = prefix, cache
        return cache


def _shared_length(a: list[int], b: list[int]) -> int:
    """How many tokens the two sequences share from their start."""
    shared = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        shared += 1
    return shared


def _head_kwargs(model: torch.nn.Module) -> dict[str, int]:
    """Only the last position's logits for a context pass (the LM head is a fifth of a small
    model's compute), where the model's forward takes ``logits_to_keep``."""
    import inspect

    base = getattr(model, "get_base_model", lambda: model)()
    accepts = "logits_to_keep" in inspect.signature(base.forward).parameters
    return {"logits_to_keep": 1} if accepts else {}


def _croppable(cache: Cache | None) -> TypeGuard[Cache]:
    """Plain full-attention key/value layers: cutting them back to a prefix is exact."""
    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer" for layer in layers)
