"""The embedded dataset is exactly what its generator writes, and is a sound held-out split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA, REPO


def test_committed_files_are_the_generators_output(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "data" / "make_notes_to_json.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("train.jsonl", "heldout.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_heldout_is_disjoint_and_answers_are_checkable() -> None:
    train = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()]
    assert len(train) >= 100 and len(held) >= 32
    assert {r["input"] for r in train}.isdisjoint({r["input"] for r in held})
    people = {json.loads(r["output"])["name"] for r in train}
    assert people.isdisjoint({json.loads(r["output"])["name"] for r in held})
    for row in held:
        record = json.loads(row["output"])
        assert set(record) == {"name", "age", "city", "occupation"}
        assert record["name"] in row["input"] and str(record["age"]) in row["input"]
