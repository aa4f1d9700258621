"""What every benchmark does with its result: print it as JSON, and write it where asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(result: dict[str, Any], out: Path | None) -> dict[str, Any]:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.write_text(text)
    return result


def embedded_slice(work: Path, *, train_rows: int, heldout_rows: int) -> dict[str, str]:
    """The first rows of the embedded notes-to-JSON files, written to ``work``: a sweep's data
    section (train and heldout paths)."""
    data = Path(__file__).resolve().parents[1] / "data" / "notes_to_json"
    paths = {}
    for name, rows in (("train", train_rows), ("heldout", heldout_rows)):
        lines = (data / f"{name}.jsonl").read_text().splitlines()[:rows]
        (work / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        paths[name] = str(work / f"{name}.jsonl")
    return paths
