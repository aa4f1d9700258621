"""``sweep human export`` and ``import``: the raters' files are blind, and planted ratings come
back unblinded as the pair's evidence and an MLflow run (real scoring of a finished sweep)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evals.preference import A_BETTER, B_BETTER, TIE
from sweeps.ab.evidence import EVIDENCE_DIR, Evidence, load_evidence, save_evidence
from sweeps.ab.human import COLUMNS, CUT_MARK, KEY_FILE, RATER_DIR, export_pairs
from sweeps.ab.human_import import import_ratings
from sweeps.config import ConfigError
from sweeps.serving.sides import paired_outputs, resolve_side
from sweeps.tracking.state import SweepState
from tests.sweeps.conftest import HELDOUT_ROWS, FinishedSweep, shared_cache


@pytest.fixture(scope="module")
def exported(ab_sweep: FinishedSweep, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``ab`` (its best trial) against the base model, exported once for the module."""
    state: SweepState = ab_sweep.state
    out = tmp_path_factory.mktemp("human") / "export"
    where = {"state_dir": state.path.parent, "mlflow_uri": ab_sweep.uri}
    with shared_cache(tmp_path_factory):
        result = export_pairs("ab", "base", out_dir=out, progress=lambda _: None, **where)
        pair = paired_outputs("ab", "base", progress=lambda _: None, **where)
    key = json.loads((out / KEY_FILE).read_text())
    return {
        **vars(ab_sweep),
        "out": out,
        "result": result,
        "pair": pair,
        "key": key,
        "where": where,
    }


@pytest.fixture
def export_copy(exported: dict[str, Any], tmp_path: Path) -> Path:
    """The export's key and rater files in a directory of the test's own (its own ratings/)."""
    out = tmp_path / "export"
    shutil.copytree(exported["out"], out, ignore=shutil.ignore_patterns("ratings", "results.json"))
    (out / "ratings").mkdir()
    return out


@pytest.fixture
def kept_evidence(exported: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    """No evidence during the test (other modules' judge runs leave some); the sweep's evidence
    as it was put back after it (the sweep is shared by the session's tests)."""
    evidence = exported["state"].path / EVIDENCE_DIR
    saved = tmp_path / "evidence-before"
    if evidence.is_dir():
        shutil.copytree(evidence, saved)
        shutil.rmtree(evidence)
    yield evidence
    shutil.rmtree(evidence, ignore_errors=True)
    if saved.is_dir():
        shutil.copytree(saved, evidence)


def rater_rows(out: Path) -> list[dict[str, str]]:
    with (out / RATER_DIR / "pairs.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def choice_for(entry: dict[str, Any], side: int) -> str:
    """The left/right/tie that prefers ``side`` (A_BETTER, B_BETTER or TIE) on a pair."""
    if side == TIE:
        return "tie"
    return "left" if (side == A_BETTER) == entry["left_is_a"] else "right"


def planted(key: dict[str, Any]) -> dict[str, int]:
    """A preferred on 9 rows, B on 2, a tie on 1: ``{pair id: side}``."""
    pair_ids = sorted(key["pairs"], key=lambda p: key["pairs"][p]["row"])
    sides = [A_BETTER] * 9 + [B_BETTER] * 2 + [TIE]
    return dict(zip(pair_ids, sides, strict=True))


# --------------------------------------------------------------------------- export
def test_rater_files_are_blind_and_shuffled(exported: dict[str, Any]) -> None:
    out, key, pair, state = exported["out"], exported["key"], exported["pair"], exported["state"]
    names = {"pairs.csv", "pairs.jsonl", "label_studio_tasks.json", "label_studio.xml",
             "argilla.py", "README.md"}  # fmt: skip
    assert {p.name for p in (out / RATER_DIR).iterdir()} == names
    assert {p.name for p in exported["result"].rater_files} == names
    assert not (out / RATER_DIR / KEY_FILE).exists() and (out / KEY_FILE).is_file()
    rows = rater_rows(out)
    assert list(rows[0]) == list(COLUMNS) and len(rows) == HELDOUT_ROWS
    jsonl = [
        json.loads(line) for line in (out / RATER_DIR / "pairs.jsonl").read_text().splitlines()
    ]
    tasks = json.loads((out / RATER_DIR / "label_studio_tasks.json").read_text())
    assert [list(r) for r in jsonl] == [list(COLUMNS)] * HELDOUT_ROWS
    assert [list(t) for t in tasks] == [["data"]] * HELDOUT_ROWS
    assert [list(t["data"]) for t in tasks] == [list(COLUMNS[:-1])] * HELDOUT_ROWS
    assert all(r["preference"] == "" for r in rows + jsonl)
    # nothing in the raters' files tells the sides apart
    best = state.best_trial()
    secrets_ = {*state.trials, *(t.run_id for t in state.trials.values()), str(state.path),
                best.adapter_path, pair.a.label, pair.b.label, key["pair_key"],
                *(item.id for item in pair.items)}  # fmt: skip
    text = "\n".join(p.read_text() for p in (out / RATER_DIR).iterdir())
    assert not [s for s in secrets_ if s and s in text]
    values = {v for r in rows for k, v in r.items() if k != "pair_id"}
    assert not values & {"ab", "base", "A", "B", "a", "b", "champion"}
    # the key: each pair's row, and left is A on some pairs and B on the others
    assert set(key["pairs"]) == {r["pair_id"] for r in rows}
    assert all(len(p) == 12 and int(p, 16) >= 0 for p in key["pairs"])
    assert {e["left_is_a"] for e in key["pairs"].values()} == {True, False}
    assert (key["a"]["ref"], key["b"]["ref"], key["sweep"]) == ("ab", "base", "ab")
    items = {item.id: item for item in pair.items}
    assert sorted(e["row"] for e in key["pairs"].values()) == sorted(items)
    for row in rows:
        entry = key["pairs"][row["pair_id"]]
        item = items[entry["row"]]
        a_side, b_side = (row["left"], row["right"]) if entry["left_is_a"] else (
            row["right"], row["left"])  # fmt: skip
        mark = CUT_MARK.format(limit=pair.max_new_tokens)  # an answer cut at the limit says so
        expected = (
            item.a + mark if item.a_cut else item.a,
            item.b + mark if item.b_cut else item.b,
        )
        assert (a_side, b_side, row["reference"]) == (*expected, item.reference)
        assert item.turns[-1].content in row["prompt"]
    xml = (out / RATER_DIR / "label_studio.xml").read_text()
    assert '<Choices name="preference" toName="prompt" choice="single"' in xml
    readme = (out / RATER_DIR / "README.md").read_text()
    assert "sweep human import OUT_DIR" in readme
    cut = sum(item.a_cut + item.b_cut for item in pair.items)
    assert pair.max_new_tokens >= 256
    assert (f"{cut} answer" in readme and f"reached the limit of {pair.max_new_tokens} new tokens"
            in readme) if cut else "No answer was cut" in readme  # fmt: skip


def test_a_second_export_into_the_same_directory_is_refused(exported: dict[str, Any]) -> None:
    before = (exported["out"] / KEY_FILE).read_text()
    with pytest.raises(ConfigError, match=r"already holds a key\.json"):
        export_pairs("ab", "base", out_dir=exported["out"], progress=lambda _: None,
                     **exported["where"])  # fmt: skip
    assert (exported["out"] / KEY_FILE).read_text() == before


# --------------------------------------------------------------------------- import
def test_planted_ratings_come_back_unblinded(
    exported: dict[str, Any], export_copy: Path, kept_evidence: Path, tmp_path: Path
) -> None:
    key, state = exported["key"], exported["state"]
    sides = planted(key)
    with (export_copy / "ratings" / "ratings.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, "rater"])
        writer.writeheader()
        for row in rater_rows(export_copy):
            side = sides[row["pair_id"]]
            writer.writerow({**row, "preference": choice_for(key["pairs"][row["pair_id"]], side),
                             "rater": "ana"})  # fmt: skip
    a, b = (resolve_side(r, **exported["where"]) for r in ("ab", "base"))
    by_row = {key["pairs"][p]["row"]: side for p, side in sides.items()}
    save_evidence(state, a, b, Evidence("judge", "ab", "base", by_row, 0, "a test judge", "now"))

    result = import_ratings(export_copy, **exported["where"])
    s = result.summary
    assert (s.wins, s.ties, s.losses, s.unparsed) == (9, 1, 2, 0)
    assert result.outcomes == by_row and result.raters == ("ana",) and result.ratings == 12
    assert (result.a, result.b) == ("ab", "base")  # the console names them
    assert s.win_rate == pytest.approx(9 / 11) and s.win_rate_low < 9 / 11 < s.win_rate_high
    assert result.rater_agreement is None  # one rater
    assert result.judge_agreement is not None and result.judge_agreement.kappa == 1.0
    assert result.judge_agreement.pairs == HELDOUT_ROWS
    stored = load_evidence(state, a, b, "human")
    assert stored is not None and stored.outcomes == by_row and stored.run_id == result.run_id
    turned = load_evidence(state, b, a, "human")
    assert turned is not None and turned.outcomes == {k: -v for k, v in by_row.items()}
    assert turned.summary().wins == 2 and turned.summary().losses == 9
    results = json.loads((export_copy / "results.json").read_text())
    assert results["summary"]["wins"] == 9 and results["run_id"] == result.run_id

    client = exported["client"]
    runs = client.search_runs([state.experiment_id], "tags.`lora_sweep.kind` = 'human'")
    run = next(r for r in runs if r.info.run_id == result.run_id)
    assert run.data.metrics["human/wins"] == 9 and run.data.metrics["human/losses"] == 2
    assert run.data.metrics["human/judge_kappa"] == 1.0 and run.data.metrics["human/raters"] == 1
    assert run.data.tags["lora_sweep.sweep"] == "ab"
    path = client.download_artifacts(result.run_id, "human/ratings.jsonl", str(tmp_path))
    unblinded = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert {(u["row"], u["preferred"]) for u in unblinded} == {
        (row, {A_BETTER: "A", B_BETTER: "B", TIE: "tie"}[side]) for row, side in by_row.items()
    }


def label_studio_export(rows: list[dict[str, str]], key: dict[str, Any]) -> list[dict[str, Any]]:
    """Label Studio's JSON export: rater 1 prefers A everywhere; rater 2 (an older export's
    user object) prefers A on 8 rows, B on 3, and skips the last (cancelled)."""
    order = sorted(rows, key=lambda r: key["pairs"][r["pair_id"]]["row"])
    tasks = []
    for index, row in enumerate(order):
        entry = key["pairs"][row["pair_id"]]

        def annotation(side: int, who: object, entry: dict[str, Any] = entry) -> dict[str, Any]:
            result = [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                       "value": {"choices": [choice_for(entry, side)]}}]  # fmt: skip
            return {"id": 1, "completed_by": who, "result": result, "was_cancelled": False}

        second = annotation(A_BETTER if index < 8 else B_BETTER, {"id": 2, "email": "bo@x.org"})
        if index == len(order) - 1:
            second = {**second, "was_cancelled": True}
        tasks.append({"id": index + 1, "data": {k: row[k] for k in COLUMNS[:-1]},
                      "annotations": [annotation(A_BETTER, 1), second]})  # fmt: skip
    return tasks


def test_a_label_studio_export_with_two_raters_counts_by_majority(
    exported: dict[str, Any], export_copy: Path, kept_evidence: Path
) -> None:
    key = exported["key"]
    tasks = label_studio_export(rater_rows(export_copy), key)
    (export_copy / "ratings" / "project-1.json").write_text(json.dumps(tasks))
    result = import_ratings(export_copy, **exported["where"])
    s = result.summary
    # 8 agreed on A, 3 split (a tie), the last rated by rater 1 only: A
    assert (s.wins, s.ties, s.losses, result.ratings) == (9, 3, 0, 23)
    assert result.raters == ("label-studio:1", "label-studio:bo@x.org")
    assert result.rater_agreement is not None and result.rater_agreement.pairs == 11
    assert result.rater_agreement.kappa == pytest.approx(0.0)  # rater 1 said A every time
    assert result.not_rated == 1 and result.judge_agreement is None


def test_bad_ratings_are_refused_naming_the_file(
    exported: dict[str, Any], export_copy: Path
) -> None:
    where = exported["where"]
    with pytest.raises(ConfigError, match=r"no ratings in .*ratings: put the raters' filled"):
        import_ratings(export_copy, **where)
    tasks = label_studio_export(rater_rows(export_copy), exported["key"])
    tasks[2]["annotations"][0]["result"][0]["value"]["choices"] = ["lefty"]
    bad = export_copy / "ratings" / "project-2.json"
    bad.write_text(json.dumps(tasks))
    with pytest.raises(ConfigError) as refused:
        import_ratings(export_copy, **where)
    assert f"{bad} task 3 annotation 1: preference 'lefty'" in str(refused.value)
    assert "write one of those three" in str(refused.value)
    bad.unlink()
    (export_copy / "ratings" / "ana.jsonl").write_text(
        json.dumps({"pair_id": "0123456789ab", "preference": "left"}) + "\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"ana.jsonl line 1: pair_id '0123456789ab' is not in"):
        import_ratings(export_copy, **where)
    (export_copy / "ratings" / "ana.jsonl").unlink()
    rows = rater_rows(export_copy)
    with (export_copy / "ratings" / "ana.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([{**row, "preference": "left"} for row in rows[:2]])
        writer.writerow({**rows[2], "preference": "lefty"})
    with pytest.raises(ConfigError, match=r"ana.csv row 4: preference 'lefty'"):  # as a
        import_ratings(export_copy, **where)  # spreadsheet numbers it: the header is row 1
    with pytest.raises(ConfigError, match=r"has no key\.json"):
        import_ratings(export_copy / "ratings", **where)
