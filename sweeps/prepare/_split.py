"""Split into train and held-out: seeded, and stratified by label where the rows have one."""

from __future__ import annotations

import random
from collections import defaultdict

from sweeps.prepare._records import Record, StepResult


def split(
    records: list[Record], *, fraction: float, seed: int
) -> tuple[list[Record], list[Record], StepResult]:
    """``(train, heldout)``; each label gives its own share (at least one row, if it has two)."""
    result = StepResult("split", rows_in=len(records))
    groups: dict[str | None, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[record.label].append(index)
    stratified = len(groups) > 1 or None not in groups
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sorted(groups, key=str):
        members = groups[label]
        rng.shuffle(members)
        share = round(len(members) * fraction)
        if stratified and len(members) >= 2:
            share = max(share, 1)
        held.update(members[: min(share, len(members) - 1)])
    train = [r for i, r in enumerate(records) if i not in held]
    heldout = [r for i, r in enumerate(records) if i in held]
    result.counts = {"train": len(train), "heldout": len(heldout)}
    if stratified:
        for label in sorted(groups, key=str):
            in_heldout = sum(1 for i in groups[label] if i in held)
            result.counts[f"label {label}"] = len(groups[label])
            result.counts[f"label {label} held out"] = in_heldout
    result.rows_out = len(records)
    return train, heldout, result
