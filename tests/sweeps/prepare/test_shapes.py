"""Every shape the guides write, as a file a user brings: `sweep data prepare` keeps every row
and `sweep validate` (the full dry run, on the tiny model) accepts a sweep on it, with no flags."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweeps.cli.main import main
from tests.conftest import DATA, tiny_sweep_config, write_jsonl

Row = dict[str, Any]


def notes(name: str, count: int) -> list[Row]:
    return [json.loads(x) for x in (DATA / name).read_text().splitlines()[:count]]


def label(row: Row) -> str:
    return "email" if '"email"' in row["output"] else "none"


SHAPES: dict[str, tuple[str, Callable[[Row], Row]]] = {
    "alpaca": ("jsonl", lambda r: r),
    "instruction_response": ("jsonl", lambda r: {  # the guides' own: '### ... ###' delimiters
        "instruction": f"### {r['input']} ###", "response": r["output"]}),
    "dolly": ("jsonl", lambda r: {"instruction": r["instruction"], "context": r["input"],
                                  "response": r["output"], "category": "information_extraction"}),
    "question_answer": ("jsonl", lambda r: {"question": r["input"], "answer": r["output"]}),
    "input_output": ("jsonl", lambda r: {"input": r["input"], "output": r["output"]}),
    "prompt_completion": ("jsonl", lambda r: {"prompt": r["input"], "completion": r["output"]}),
    "prompt_response": ("jsonl", lambda r: {"prompt": r["input"], "response": r["output"]}),
    "text_label": ("csv", lambda r: {"text": r["input"], "sentiment": label(r)}),
    "chat": ("jsonl", lambda r: {"messages": [{"role": "user", "content": r["input"]},
                                              {"role": "assistant", "content": r["output"]}]}),
    "hash_pairs": ("txt", lambda r: {"text": f"### {r['input']} ###\n{r['output']}"}),
}  # fmt: skip


def write_as_users_do(path: Path, rows: list[Row], kind: str) -> Path:
    if kind == "csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif kind == "txt":
        path.write_text("\n\n".join(r["text"] for r in rows) + "\n")
    else:
        write_jsonl(path, rows)
    return path


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_prepares_and_validates_with_no_flags(
    shape: str, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kind, convert = SHAPES[shape]
    train = write_as_users_do(tmp_path / f"train.{kind}", [convert(r) for r in
                              notes("train.jsonl", 40)], kind)  # fmt: skip
    held = write_as_users_do(tmp_path / f"held.{kind}", [convert(r) for r in
                             notes("heldout.jsonl", 20)], kind)  # fmt: skip
    out = tmp_path / "prepared"
    assert main(["data", "prepare", str(train), "--heldout", str(held), "--out", str(out),
                 "--no-near-dedup", "--no-redact"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert f"shape {shape}" in said, said
    kept = (out / "train.jsonl").read_text().splitlines()
    assert len(kept) == 40, said  # no valid row lost
    config = tiny_sweep_config(tiny_model, {"train": train, "heldout": held}, tmp_path)
    config["data"]["allow_small"] = False
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 0
    said = capsys.readouterr().out
    assert f"shape {shape}" in said and f"{path}: valid" in said
