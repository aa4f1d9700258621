"""``sweep errors``: the grouping of wrong held-out rows (hand-made rows, exact counts), the files
written, and the whole path on a real sweep: its champion's errors, read back by the data recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals.metrics import exact_match, field_f1
from sweeps.ab.error_analysis import (
    BANDS,
    ErrorReport,
    FieldErrors,
    Group,
    analyse_errors,
    find_errors,
    length_thirds,
    write_errors,
)
from sweeps.config import ConfigError
from sweeps.prepare import PrepareOptions, prepare_data
from sweeps.serving.scoring import load_spec
from sweeps.tracking.state import SweepState
from tests.sweeps.conftest import HELDOUT_ROWS, FinishedSweep, shared_cache

SYSTEM = "You turn notes into JSON records."
REFERENCE = '{"name": "Ana", "age": 30, "city": "Porto"}'


def chatml(user: str, *, system: str | None = SYSTEM) -> str:
    """A prompt as a ChatML chat template renders it, generation prompt at the end."""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def item(i: int, user: str, prediction: str, reference: str, metric: str) -> dict[str, Any]:
    score = field_f1(prediction, reference) if metric == "field_f1" else exact_match(
        prediction, reference)  # fmt: skip
    return {"id": f"{i:05d}-abcdef{i:02d}", "prompt": chatml(user), "reference": reference,
            "prediction": prediction, "score": score,
            "exact_match": exact_match(prediction, reference)}  # fmt: skip


JSON_PREDICTIONS = [
    REFERENCE,  # right
    '{"name": "Ana", "age": 30}',  # city missing: 0.8
    '{"name": "Ana", "age": 31, "city": "Porto"}',  # age wrong: 0.67
    "Sorry, I cannot help with that.",  # not JSON: 0
    '{"name": "Bob", "age": 1, "city": "Oslo", "phone": "1"}',  # all wrong, phone extra: 0
    'Here: {"name": "ana", "zip": "4000"}',  # name right (case), age and city missing, zip: 0.4
]


@pytest.fixture
def json_items() -> list[dict[str, Any]]:
    """Six rows of a notes-to-JSON task, user turns 10, 20, ... 60 characters long."""
    return [item(i, "n" * (10 * (i + 1)), p, REFERENCE, "field_f1")
            for i, p in enumerate(JSON_PREDICTIONS)]  # fmt: skip


# --------------------------------------------------------------------------- the analysis
def test_json_rows_are_grouped_by_band_length_and_field(json_items: list[dict[str, Any]]) -> None:
    assert [round(i["score"], 3) for i in json_items] == [1.0, 0.8, 0.667, 0.0, 0.0, 0.4]
    a = analyse_errors(json_items, metric="field_f1")
    assert (a.rows, a.wrong, a.unparseable) == (6, 5, 1)
    assert a.error_rate == pytest.approx(5 / 6)
    assert a.mean_score == pytest.approx((1 + 0.8 + 2 / 3 + 0.4) / 6)
    assert a.bands == {"0": 2, "(0, 0.5)": 1, "[0.5, 1)": 2}
    assert list(a.bands) == list(BANDS)
    assert a.lengths == [Group("short", 2, 1, "10-20 chars"), Group("medium", 2, 2, "30-40 chars"),
                         Group("long", 2, 2, "50-60 chars")]  # fmt: skip
    assert a.fields == [FieldErrors("age", missing=1, wrong=2),
                        FieldErrors("city", missing=2, wrong=1),
                        FieldErrors("name", wrong=1), FieldErrors("phone", extra=1),
                        FieldErrors("zip", extra=1)]  # fmt: skip
    assert a.labels == []
    assert [e.id[:5] for e in a.errors] == ["00003", "00004", "00005", "00002", "00001"]
    by_row = {e.id[:5]: e for e in a.errors}
    assert by_row["00003"].unparseable and not by_row["00003"].missing
    assert (by_row["00005"].missing, by_row["00005"].wrong_fields, by_row["00005"].extra) == (
        ["age", "city"], [], ["zip"])  # fmt: skip
    assert (by_row["00001"].band, by_row["00001"].length, by_row["00001"].length_group) == (
        "[0.5, 1)", 20, "short")  # fmt: skip
    assert [t.role for t in by_row["00001"].turns] == ["system", "user"]
    data = a.to_dict()
    assert data["error_rate"] == pytest.approx(5 / 6)
    assert [g["rate"] for g in data["lengths"]] == [0.5, 1.0, 1.0]
    json.dumps(data)  # errors.json is this, as it is


def test_thirds_rank_rows_by_length_and_keep_ties_together() -> None:
    assert length_thirds([60, 10, 30, 20, 50, 40]) == [2, 0, 1, 0, 2, 1]
    assert length_thirds([5, 9, 5, 5]) == [0, 2, 0, 0]  # three of one length: all short
    assert length_thirds([7, 7, 7]) == [0, 0, 0]
    assert length_thirds([1, 2, 3, 4, 5, 6, 7]) == [0, 0, 0, 1, 1, 2, 2]


def test_classification_rows_are_grouped_by_label() -> None:
    labels = ["positive", "negative", "neutral"] * 4
    wrong = {0, 3, 6, 1, 2}  # positive 3 of 4 wrong, negative 1, neutral 1
    items = [item(i, f"Review {i}: it was fine, I suppose.",
                  ("negative" if label != "negative" else "positive") if i in wrong else label,
                  label, "exact_match") for i, label in enumerate(labels)]  # fmt: skip
    a = analyse_errors(items, metric="exact_match")
    assert (a.rows, a.wrong, a.bands) == (12, 5, {"0": 5, "(0, 0.5)": 0, "[0.5, 1)": 0})
    assert a.labels == [Group("positive", 4, 3), Group("negative", 4, 1), Group("neutral", 4, 1)]
    assert a.fields == [] and a.unparseable == 0
    assert {e.label for e in a.errors} == {"positive", "negative", "neutral"}


def test_answers_are_not_labels_unless_the_data_names_a_label_column() -> None:
    answers = ["Lisbon", "Porto", "Faro", "Braga"]
    items = [item(i, f"Question {i}?", "Madrid", a, "exact_match") for i, a in enumerate(answers)]
    assert analyse_errors(items, metric="exact_match").labels == []
    hinted = analyse_errors(items, metric="exact_match", label_field_present=True)
    assert [g.name for g in hinted.labels] == ["Braga", "Faro", "Lisbon", "Porto"]
    long_answers = [item(i, "Summarise.", "no", "A long answer " * 5, "rouge_l") for i in range(4)]
    assert analyse_errors(long_answers, metric="rouge_l", label_field_present=True).labels == []


def test_every_row_right_is_an_empty_analysis() -> None:
    items = [item(i, "n" * i, REFERENCE, REFERENCE, "field_f1") for i in range(3)]
    a = analyse_errors(items, metric="field_f1")
    assert (a.wrong, a.errors, a.fields, a.bands) == (0, [], [], {b: 0 for b in BANDS})


# --------------------------------------------------------------------------- the files
def test_files_hold_chat_rows_detail_analysis_and_summary(
    json_items: list[dict[str, Any]], tmp_path: Path
) -> None:
    json_items.append({**item(6, "", "x", REFERENCE, "field_f1"), "prompt": "A bare note: x"})
    a = analyse_errors(json_items, metric="field_f1")
    paths = write_errors(a, out_dir=tmp_path / "out", title="ab/t1, sweep ab")
    rows = [json.loads(x) for x in paths["errors.jsonl"].read_text().splitlines()]
    assert len(rows) == a.wrong == 6
    assert all(list(r) == ["messages"] for r in rows)
    by_reference = {e.id: e for e in a.errors}
    for row, error in zip(rows, a.errors, strict=True):
        roles = [m["role"] for m in row["messages"]]
        assert set(row["messages"][0]) == {"role", "content"}
        assert row["messages"][-1] == {
            "role": "assistant",
            "content": by_reference[error.id].reference,
        }
        expected = ["user", "assistant"] if error.id.startswith("00006") else [
            "system", "user", "assistant"]  # fmt: skip
        assert roles == expected
    assert rows[0]["messages"][:2] == [{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": "n" * 40}]  # fmt: skip
    detail = [json.loads(x) for x in paths["errors_detail.jsonl"].read_text().splitlines()]
    assert [d["id"] for d in detail] == [e.id for e in a.errors]
    assert {"score", "prediction", "band", "length_group", "missing"} <= set(detail[0])
    assert json.loads(paths["errors.json"].read_text())["wrong"] == 6
    md = paths["errors.md"].read_text()
    assert "6 of 7 held-out rows wrong" in md and "| age | 1 | 2 | 0 |" in md
    assert f"sweep data prepare {paths['errors.jsonl']} --out data/round2" in md
    assert "| short |" in md and "Sorry, I cannot help with that." in md


def test_console_lines_name_the_counts_groups_files_and_next_command(
    json_items: list[dict[str, Any]], tmp_path: Path
) -> None:
    a = analyse_errors(json_items, metric="field_f1")
    paths = write_errors(a, out_dir=tmp_path, title="t")
    lines = ErrorReport("ab/t1", "ab/t1", "ab", a, tmp_path, paths).lines()
    assert lines[:3] == [
        "ab/t1: 5 of 6 held-out rows of sweep ab wrong (83%); mean field_f1 0.478",
        "By score: 0: 2, (0, 0.5): 1, [0.5, 1): 2",
        "Most often wrong, tied at 100%: medium (30-40 chars) 2 of 2, long (50-60 chars) 2 of 2 "
        "(83% overall)",  # two thirds tie: neither is called the one most often wrong
    ]
    assert lines[3].startswith("JSON fields: age (missing 1, wrong 2, extra 0), city (missing 2")
    assert lines[3].endswith("; outputs with no JSON object: 1")
    assert lines[-1].startswith(f"Next: sweep data prepare {tmp_path / 'errors.jsonl'} --out ")
    right = analyse_errors(json_items[:1], metric="field_f1")
    assert len(ErrorReport("x", "x", "ab", right, tmp_path, paths).lines()) == 2


def test_two_length_thirds_wrong_equally_often_are_called_a_tie() -> None:
    from dataclasses import replace

    from sweeps.ab.error_analysis import ErrorAnalysis, Group, length_line

    thirds = [Group("short", 4, 3, "1-10 chars"), Group("medium", 4, 3, "11-20 chars"),
              Group("long", 4, 0, "21-30 chars")]  # fmt: skip
    analysis = ErrorAnalysis(metric="field_f1", rows=12, wrong=6, mean_score=0.5, bands={},
                             lengths=thirds, labels=[], fields=[], unparseable=0, errors=[])  # fmt: skip
    assert length_line(analysis) == ("Most often wrong, tied at 75%: short (1-10 chars) 3 of 4, "
                                     "medium (11-20 chars) 3 of 4 (50% overall)")  # fmt: skip
    single = replace(analysis, lengths=[thirds[0], replace(thirds[1], wrong=2), thirds[2]])
    assert length_line(single).startswith("Most often wrong: short inputs (1-10 chars), 3 of 4")


def test_base_and_adapters_from_no_sweep_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="held-out set") as refused:
        find_errors("base", state_dir=tmp_path, mlflow_uri="", out_dir=tmp_path / "out")
    assert "\n" not in str(refused.value)
    adapter = tmp_path / "loose-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
    with pytest.raises(ConfigError, match="comes from no sweep"):
        find_errors(str(adapter), state_dir=tmp_path, mlflow_uri="", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- a real sweep
def test_champion_errors_become_data_the_recipe_prepares(
    ab_sweep: FinishedSweep, tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from sweeps.cli.main import main

    state: SweepState = ab_sweep.state
    out = tmp_path_factory.mktemp("errors")
    said: list[str] = []
    with shared_cache(tmp_path_factory):
        report = find_errors("champion", state_dir=state.path.parent, mlflow_uri=ab_sweep.uri,
                             out_dir=out / "report", progress=said.append)  # fmt: skip
    a = report.analysis
    assert a.rows == HELDOUT_ROWS and a.metric == "field_f1" and a.wrong > 0
    assert sum(a.bands.values()) == a.wrong == len(a.errors)
    assert sum(g.rows for g in a.lengths) == HELDOUT_ROWS
    rows = [json.loads(x) for x in report.data.read_text().splitlines()]
    assert len(rows) == a.wrong
    heldout = [json.loads(x) for x in
               Path(load_spec(state).data.heldout or "").read_text().splitlines()]  # fmt: skip
    for row, error in zip(rows, a.errors, strict=True):
        source = heldout[int(error.id[:5])]  # item ids start with the held-out row's number
        messages = row["messages"]
        assert messages[-1] == {"role": "assistant", "content": source["output"]}
        assert [m["role"] for m in messages][-2:] == ["user", "assistant"]
        assert source["input"] in messages[-2]["content"]
    lines = report.lines()
    assert lines[0].startswith("champion (ab/") and f"of {HELDOUT_ROWS} held-out rows" in lines[0]
    assert lines[-1].startswith(f"Next: sweep data prepare {report.data} --out data/round2")
    assert set(report.paths) == {"errors.jsonl", "errors_detail.jsonl", "errors.json", "errors.md"}
    assert all(p.is_file() for p in report.paths.values())

    prepared = prepare_data(PrepareOptions(inputs=(report.data,), out_dir=out / "round2"),
                            progress=said.append)  # fmt: skip
    assert len(prepared.train) + len(prepared.heldout) > 0
    assert (out / "round2" / "train.jsonl").is_file()
    assert main(["data", "prepare", str(report.data), "--out", str(out / "round2-cli")]) == 0
    assert (out / "round2-cli" / "train.jsonl").is_file()
    capsys.readouterr()
