"""Deduplicate: exact duplicates (after case and whitespace folding), then near-duplicates by
MinHash LSH over word 3-gram shingles (short instruction rows need short shingles) (datasketch). The first of each group is kept."""

from __future__ import annotations

import hashlib
import re

from sweeps.prepare._records import Record, StepResult

WORD = re.compile(r"\w+")
SHINGLE = 3


def folded(record: Record) -> str:
    return " ".join(" ".join(record.texts()).casefold().split())


def shingles(text: str) -> set[bytes]:
    words = WORD.findall(text.casefold())
    if len(words) <= SHINGLE:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + SHINGLE]).encode() for i in range(len(words) - SHINGLE + 1)}


def exact(records: list[Record]) -> tuple[list[Record], StepResult]:
    result = StepResult("dedup_exact", rows_in=len(records))
    seen: dict[str, Record] = {}
    out = []
    for record in records:
        key = hashlib.sha256(folded(record).encode()).hexdigest()
        if key in seen:
            result.removed.append((record, f"exact duplicate of {seen[key].where}"))
            continue
        seen[key] = record
        out.append(record)
    result.count("exact duplicates", len(result.removed))
    result.rows_out = len(out)
    return out, result


def near(
    records: list[Record], *, threshold: float, num_perm: int = 128, seed: int = 1
) -> tuple[list[Record], StepResult]:
    """Drop each record whose Jaccard similarity to a kept one reaches ``threshold``.

    LSH runs at a lower threshold to find candidates (few near-misses at the border), and each
    candidate is then confirmed on the exact Jaccard of the two shingle sets (no false hits).
    """
    from datasketch import MinHash, MinHashLSH

    result = StepResult("dedup_near", rows_in=len(records))
    sets = [shingles(" ".join(r.texts())) for r in records]
    hashes = MinHash.bulk(sets, num_perm=num_perm, seed=seed)
    index = MinHashLSH(threshold=max(threshold - 0.15, 0.3), num_perm=num_perm)
    out = []
    for position, (record, minhash) in enumerate(zip(records, hashes, strict=True)):
        best = max(
            ((jaccard(sets[position], sets[k]), k) for k in index.query(minhash)), default=(0.0, -1)
        )
        if best[0] >= threshold:
            kept = records[best[1]]
            result.removed.append(
                (record, f"near duplicate of {kept.where} (Jaccard {best[0]:.2f})")
            )
            continue
        index.insert(position, minhash)
        out.append(record)
    result.count("near duplicates", len(result.removed))
    result.rows_out = len(out)
    return out, result


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0
