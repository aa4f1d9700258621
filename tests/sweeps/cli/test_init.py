"""sweep init on data written as users bring it: the YAML validates and launches a real sweep
(tiny model, real Ray Tune + Optuna + MLflow); and the guides' shapes train end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweeps import launch_sweep
from sweeps.cli.main import main
from tests.conftest import DATA, slice_embedded_data, tiny_sweep_config, write_jsonl


def embedded_rows(name: str, count: int | None = None) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (DATA / name).read_text().splitlines()[:count]]


def init_validate_launch(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(["init", *argv, "--out", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    assert out.read_text().startswith(f"# sweep launch {out}\n")
    assert main(["validate", str(out)]) == 0
    said = capsys.readouterr().out
    assert "Plan:" in said and "estimated wall time:" in said and f"{out}: valid" in said
    state = launch_sweep(out)
    assert state.status == "completed"
    assert len(state.trials) == written["search"]["num_samples"]
    # the trials ended: no checkpoint is left behind by default, every adapter is
    assert not list((state.path / "ray").rglob("checkpoint_*"))
    assert all(Path(t.adapter_path or "").is_dir() for t in state.trials.values())
    return written, state


def test_init_on_the_embedded_data_validates_and_launches(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the YAML's default tracking (mlruns/) lands here
    argv = [str(DATA / "train.jsonl"), "--heldout", str(DATA / "heldout.jsonl"), "--model",
            str(tiny_model), "--budget", "20s"]  # fmt: skip
    written, state = init_validate_launch(argv, tmp_path / "notes.yaml", capsys)
    assert written["name"] == written["tracking"]["experiment"] == "notes_to_json"
    assert written["data"]["format"] == "alpaca" and "system_prompt" not in written["data"]
    assert written["search_space"]["sequence_len"] == [128]  # every row is under 128 tokens
    assert "q_proj" in written["training"]["lora_target_modules"]
    assert state.task_metric == "field_f1"


def test_init_on_a_dolly_file_splits_it_and_launches(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    dolly = write_jsonl(tmp_path / "Dolly Subset.jsonl", [
        {"instruction": row["instruction"], "context": row["input"], "response": row["output"],
         "category": "information_extraction"} for row in embedded_rows("train.jsonl", 80)])  # fmt: skip
    written, state = init_validate_launch([str(dolly), "--model", str(tiny_model), "--budget",
                                           "20s"], tmp_path / "dolly.yaml", capsys)  # fmt: skip
    assert written["name"] == "dolly-subset" and written["data"]["format"] == "dolly"
    assert written["data"]["val_set_size"] == 0.25  # 20 held-out rows of 80
    assert all(t.status in ("completed", "pruned") for t in state.trials.values())
    # its base scores were not cached: computed beside the trials, recorded before the summary
    assert "heldout/field_f1" in state.base_metrics
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(state.mlflow_uri).get_run(state.parent_run_id)
    assert parent.data.metrics["base/heldout/field_f1"] == state.base_metrics["heldout/field_f1"]


def test_init_refuses_too_little_data_in_one_line(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = write_jsonl(tmp_path / "small.jsonl", embedded_rows("train.jsonl", 10))
    assert main(["init", str(small), "--model", str(tiny_model), "--out",
                 str(tmp_path / "s.yaml")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {small}: 7 training and 3 held-out rows; a sweep needs at least 32 "
                   "and 20 to rank trials: add rows (or give --heldout FILE), or set "
                   "data.allow_small: true in a YAML of your own")  # fmt: skip
    assert not (tmp_path / "s.yaml").exists() and not list(tmp_path.glob(".*draft"))


def test_the_guides_foobear_rows_train_in_a_real_sweep(tiny_model: Path, tmp_path: Path) -> None:
    """{"instruction": "### ... ###", "response": ...}, as the guides write it, with no flags."""
    rows = [{"instruction": f"### {r['instruction']} {r['input']} ###", "response": r["output"]}
            for r in embedded_rows("train.jsonl", 40)]  # fmt: skip
    data = slice_embedded_data(tmp_path, train=0, heldout=8)
    data["train"] = write_jsonl(tmp_path / "foobear.jsonl", rows)
    config = tiny_sweep_config(tiny_model, data, tmp_path, search={"num_samples": 2},
                               search_space={"num_epochs": 1})  # fmt: skip
    state = launch_sweep(config, name="foobear")
    assert state.status == "completed"
    assert all(t.metrics.get("tokens_trained", 0) > 0 for t in state.trials.values())


@pytest.mark.parametrize(("flags", "expected"), [
    (["--name", "../evil"], "error: --name '../evil' must be 1-100 characters"),
    (["--budget", "soon"], "error: --budget 'soon': give a duration such as 30m"),
])  # fmt: skip
def test_init_refuses_a_name_that_escapes_and_a_budget_that_is_no_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    data = write_jsonl(tmp_path / "rows.jsonl", embedded_rows("train.jsonl", 60))
    assert main(["init", str(data), *flags]) == 2
    assert capsys.readouterr().err.strip().startswith(expected)
    assert not list(tmp_path.parent.glob("evil*"))


def test_init_on_a_sharegpt_file_validates_and_launches(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """{"conversations": [{"from": "human", ...}, {"from": "gpt", ...}]}, as the guides write it:
    init's ``format: chat`` reads its own file back."""
    monkeypatch.chdir(tmp_path)
    rows = [{"conversations": [{"from": "human", "value": f"Add {i} and {3 * i + 7}."},
                               {"from": "gpt", "value": str(4 * i + 7)}]}
            for i in range(240)]  # fmt: skip
    data = write_jsonl(tmp_path / "conversations.jsonl", rows)
    written, state = init_validate_launch([str(data), "--model", str(tiny_model), "--budget",
                                           "20s"], tmp_path / "sharegpt.yaml", capsys)  # fmt: skip
    assert written["data"]["format"] == "chat"
    assert all(t.status in ("completed", "pruned") for t in state.trials.values())


def _seconds(line: str) -> float:
    """``estimated wall time: 45 s (0.02 device-hours)``, ``... 3 min ...``, or the upper end of
    ``... 2-3 min ...`` or ``... 80 s to 2 min ...``, in seconds."""
    value, unit = line.split(": ", 1)[1].split(" (")[0].split(" to ")[-1].split()[:2]
    return float(value.split("-")[-1]) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_init_on_a_labelled_csv_follows_the_evidence_and_fits_its_budget(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A text,sentiment CSV of 120 rows, 40 a label: a stratified held-out set of 20 rows, all
    generated at every rung, the learning rates that did best here, the file where --help says,
    and an estimate that validate's own timing keeps within the budget."""
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    labels = ["positive", "negative", "neutral"]
    pd.DataFrame({"text": [f"Review {i}: the product was {labels[i % 3]} enough." for i in range(120)],
                  "sentiment": [labels[i % 3] for i in range(120)]}).to_csv("sentiment.csv",
                                                                           index=False)  # fmt: skip
    assert main(["init", "sentiment.csv", "--model", str(tiny_model), "--budget", "3m"]) == 0
    out = tmp_path / "search_spaces" / "sentiment.yaml"
    written = yaml.safe_load(out.read_text())
    capsys.readouterr()
    lr = written["search_space"]["learning_rate"]
    assert lr["low"] <= 1e-3 and lr["high"] >= 1e-2
    assert written["evaluation"]["generation_samples"] == 20
    assert main(["validate", str(out)]) == 0
    said = capsys.readouterr().out.splitlines()
    heldout = next(line for line in said if line.startswith("Held-out: "))
    assert heldout == ("Held-out: 20 rows (split off data.train, stratified by label: negative 7, "
                       "neutral 7, positive 6); generated at each rung: 20")  # fmt: skip
    wall = next(line for line in said if line.strip().startswith("estimated wall time:"))
    assert _seconds(wall.strip()) <= 180
