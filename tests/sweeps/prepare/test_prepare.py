"""``sweep data prepare`` on a planted corpus: every planted problem found, every clean row kept.

The corpus is the embedded task's training rows (clean), plus planted exact duplicates,
near-duplicates, PII of each type, copies of held-out notes and of benchmark questions, quality
problems and broken rows. Each plant is known by its row number, so each step's precision and
recall are computed against the truth and printed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from sweeps.cli.main import main
from tests.conftest import DATA, nothing_reached_mlflow, write_jsonl

CLEAN_ROWS = 60
INSTRUCTION = "Extract the contact from this note as JSON."
BENCHMARK_QUESTIONS = [
    "Which of the following best explains why the days and nights on Earth are of different "
    "lengths during most of the year?",
    "A student wants to find out which brand of paper towel absorbs the most water in a "
    "kitchen experiment; what should the student keep the same?",
]
PII = {  # kind: (the value, the sentence it sits in)
    "email": ("maria.lopez@example.org", "write to {} about the invoice"),
    "phone": ("+44 20 7946 0958", "call her on {} after five"),
    "credit_card": ("4111 1111 1111 1111", "paid with card {} at the desk"),
    "ip_address": ("203.0.113.77", "logged in from {} yesterday evening"),
}
NAMES = ["Dana Whitfield", "Arjun Mehta", "Lena Novak", "Tariq Haddad"]


def alpaca(note: str, output: str = '{"name": "X"}') -> dict[str, Any]:
    return {"instruction": INSTRUCTION, "input": note, "output": output}


def planted_corpus(root: Path) -> dict[str, Any]:
    """The corpus file, its held-out file and benchmark mirror, and the truth per plant."""
    rows = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines()[:CLEAN_ROWS]]
    heldout = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()]
    long_notes = [h for h in heldout if len(h["input"].split()) >= 14][:2]
    truth: dict[str, list[int]] = {}

    def plant(kind: str, row: dict[str, Any]) -> None:
        rows.append(row)
        truth.setdefault(kind, []).append(len(rows))  # 1-based row number

    plant("exact", dict(rows[0]))
    plant("exact", {**rows[1], "input": "  " + rows[1]["input"].upper() + "  "})
    plant("exact", dict(rows[2]))
    for index in (3, 4, 5):  # one word changed in a long note
        words = (rows[index]["input"] + " Referred by a colleague from the north office.").split()
        rows[index] = {**rows[index], "input": " ".join(words)}
        plant("near", {**rows[index], "input": " ".join([*words[:-1], "branch."])})
    for (kind, (value, sentence)), name in zip(PII.items(), NAMES, strict=True):
        plant(f"pii_{kind}", alpaca(f"{name}, {30 + len(kind)}, {sentence.format(value)}.",
                                    json.dumps({"name": name})))  # fmt: skip
    plant("pii_ip_address", alpaca("Router of Sam Okafor at 2001:0db8:85a3:0000:0000:8a2e:0370:7334"
                                   " rebooted.", '{"name": "Sam Okafor"}'))  # fmt: skip
    for note in long_notes:
        plant("heldout_copy", alpaca(note["input"], note["output"]))
    for question in BENCHMARK_QUESTIONS:
        plant("benchmark_copy", {"instruction": question, "input": "", "output": "Answer: A"})
    plant("quality", alpaca("Met Lee Park today, 30, a cook in Lyon.", "{"))  # 1-char response
    plant("quality", {"instruction": "Repeat after me: hello there", "input": "",
                      "output": "Repeat after me: hello there"})  # fmt: skip
    plant("broken", {"instruction": INSTRUCTION, "input": "no output field here"})
    plant("broken", {"instruction": INSTRUCTION, "input": "x", "output": ["a list"]})
    plant("broken", {"instruction": "", "input": "empty instruction", "output": "{}"})
    mirror = root / "mirror"
    write_jsonl(mirror / "arc_challenge_test.jsonl", [
        {"id": f"q{i}", "question": q, "choices": {"text": ["a", "b"], "label": ["A", "B"]},
         "answerKey": "A"} for i, q in enumerate(BENCHMARK_QUESTIONS)])  # fmt: skip
    return {"corpus": write_jsonl(root / "raw.jsonl", rows), "mirror": mirror, "truth": truth,
            "heldout": write_jsonl(root / "heldout.jsonl", heldout)}  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("prepare")
    planted = planted_corpus(root)
    out = root / "prepared"
    args = ["data", "prepare", str(planted["corpus"]), "--out", str(out), "--heldout",
            str(planted["heldout"]), "--benchmarks", "arc_challenge", "--mirror",
            str(planted["mirror"])]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    return {**planted, "out": out, "manifest": manifest}


def found_rows(out: Path, step: str) -> set[int]:
    """Row numbers a step removed, from removed.jsonl (every removed row, with its reason)."""
    rows = [json.loads(line) for line in (out / "removed.jsonl").read_text().splitlines()]
    return {row["row"] for row in rows if row["step"] == step}


def precision_recall(found: set[int], planted: set[int]) -> tuple[float, float]:
    hits = len(found & planted)
    return hits / max(len(found), 1), hits / max(len(planted), 1)


@pytest.mark.parametrize(
    ("step", "kinds"),
    [("dedup_exact", ["exact"]), ("dedup_near", ["near"]), ("read", ["broken"]),
     ("quality", ["quality"]), ("decontaminate", ["heldout_copy", "benchmark_copy"])],
)  # fmt: skip
def test_every_planted_row_is_found_by_its_step(
    prepared: dict[str, Any], step: str, kinds: list[str]
) -> None:
    planted = {row for kind in kinds for row in prepared["truth"][kind]}
    found = found_rows(prepared["out"], step)
    precision, recall = precision_recall(found, planted)
    print(f"{step}: precision {precision:.0%}, recall {recall:.0%} ({len(planted)} planted)")
    assert (precision, recall) == (1.0, 1.0), (sorted(found), sorted(planted))


def test_every_pii_type_is_redacted_with_its_placeholder(prepared: dict[str, Any]) -> None:
    text = (prepared["out"] / "train.jsonl").read_text()
    for kind, (value, _) in PII.items():
        assert f"<{kind.upper()}>" in text and value not in text, kind
    assert "2001:0db8" not in text
    redact = next(s for s in prepared["manifest"]["steps"] if s["name"] == "redact")
    counts = redact["counts"]
    print(f"redact: {counts}")
    assert (counts["<EMAIL>"], counts["<PHONE>"], counts["<CREDIT_CARD>"]) == (1, 1, 1)
    assert counts["<IP_ADDRESS>"] == 2  # IPv4 and IPv6
    pii_rows = {r for k, rows in prepared["truth"].items() if k.startswith("pii") for r in rows}
    assert redact["changed"] == len(pii_rows)  # nothing else was touched


def test_clean_rows_are_kept(prepared: dict[str, Any]) -> None:
    train = [json.loads(x) for x in (prepared["out"] / "train.jsonl").read_text().splitlines()]
    outputs = [row["messages"][-1]["content"] for row in train]
    clean = [json.loads(x)["output"] for x in (DATA / "train.jsonl").read_text().splitlines()]
    assert all(output in outputs for output in clean[:CLEAN_ROWS])
    kept_plants = sum(
        len(rows) for kind, rows in prepared["truth"].items() if kind.startswith("pii")
    )
    assert len(train) == CLEAN_ROWS + kept_plants


def test_report_and_manifest_describe_the_output(prepared: dict[str, Any]) -> None:
    from trainers.data import file_digest

    out, manifest = prepared["out"], prepared["manifest"]
    for name in ("train.jsonl", "heldout.jsonl"):
        entry = manifest["outputs"][name]
        assert entry["sha256"] == file_digest(out / name)
        assert entry["rows"] == len((out / name).read_text().splitlines())
    assert manifest["inputs"][0]["sha256"] == file_digest(prepared["corpus"])
    assert manifest["inputs"][0]["rejected"] == len(prepared["truth"]["broken"])
    html = (out / "report.html").read_text()
    assert '<table id="steps">' in html and "data:image/png;base64," in html
    broken = prepared["truth"]["broken"][0]
    assert f"raw.jsonl: row {broken}" in html and "missing field &#39;output&#39;" in html
    markdown = (out / "report.md").read_text()
    assert "| dedup_exact | " in markdown and (out / "lengths.png").stat().st_size > 1000


def test_the_guides_formats_ingest_without_configuration(tmp_path: Path) -> None:
    guide = tmp_path / "foobear.txt"
    guide.write_text("### what is a foobear ###\nA foobear is a bear made of foo.\n\n"
                     "### what does a foobear eat ###\nMostly bar, and sometimes baz.\n")  # fmt: skip
    alpaca_rows = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": f"Name a colour number {i}", "input": "", "output": f"Colour {i}"}
        for i in range(10)])  # fmt: skip
    out = tmp_path / "out"
    args = ["data", "prepare", str(guide), str(alpaca_rows), "--out", str(out),
            "--no-decontaminate", "--heldout-fraction", "0.25"]  # fmt: skip
    assert main(args) == 0
    rows = [json.loads(x) for name in ("train.jsonl", "heldout.jsonl")
            for x in (out / name).read_text().splitlines()]  # fmt: skip
    assert len(rows) == 12
    foobear = next(r for r in rows if "foobear is" in r["messages"][-1]["content"])
    assert foobear["messages"][0] == {"role": "user", "content": "what is a foobear"}
    colour = next(r for r in rows if r["messages"][-1]["content"] == "Colour 3")
    assert colour["messages"][0]["content"] == "Name a colour number 3"  # no empty input


def test_split_is_seeded_and_stratified_by_label(tmp_path: Path) -> None:
    rows = [{"prompt": f"Review {i}: {'great' if i % 4 else 'awful'} stay, room {i}",
             "completion": "positive" if i % 4 else "negative",
             "label": "positive" if i % 4 else "negative"} for i in range(40)]  # fmt: skip
    source = write_jsonl(tmp_path / "reviews.jsonl", rows)
    outs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        assert main(["data", "prepare", str(source), "--out", str(out), "--label-field", "label",
                     "--no-decontaminate", "--no-dedup", "--heldout-fraction", "0.2"]) == 0  # fmt: skip
        outs.append((out / "heldout.jsonl").read_text())
    assert outs[0] == outs[1]  # seeded
    held = [json.loads(x)["label"] for x in outs[0].splitlines()]
    assert sorted(held) == ["negative"] * 2 + ["positive"] * 6  # 20% of 10 and of 30
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    counts = next(s["counts"] for s in manifest["steps"] if s["name"] == "split")
    assert (counts["label negative"], counts["label negative held out"]) == (10, 2)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "a", output}\n',
         "bad.jsonl: row 2: not valid JSON"),
        ("bad.csv", None, "bad.csv: row 1: no known shape in keys (input, instruction): "
         "missing field 'output'"),
        ("bad.json", b'[{"instruction": "caf\\xe9", "output": "x"}]', "bad.json: not UTF-8 text"),
    ],
)  # fmt: skip
def test_bad_files_fail_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: Any, expected: str
) -> None:
    path = tmp_path / name
    if name.endswith(".csv"):
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([["instruction", "input"], ["a", "b"]])
    elif isinstance(content, bytes):
        path.write_bytes(content.replace(b"\\xe9", b"\xe9"))
    else:
        path.write_text(content)
    out = tmp_path / "out"
    assert main(["data", "prepare", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def launch_config(tiny_model: Path, tmp_path: Path, rows: list[dict[str, Any]],
                  **overrides: Any) -> dict[str, Any]:  # fmt: skip
    from tests.conftest import tiny_sweep_config

    held = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()[:8]]
    data = {"train": write_jsonl(tmp_path / "raw.jsonl", rows),
            "heldout": write_jsonl(tmp_path / "heldout.jsonl", held)}  # fmt: skip
    return tiny_sweep_config(
        tiny_model, data, tmp_path, search={"num_samples": 1, "max_concurrent": 1},
        scheduler={"type": "none"}, search_space={"num_epochs": 1, "lora_r": [2],
        "learning_rate": 1e-3, "lora_alpha": 4, "sequence_len": [128]}, **overrides,
    )  # fmt: skip


def test_launch_prepares_raw_data_first_and_logs_it_on_the_parent_run(
    tiny_model: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from sweeps import launch_sweep

    rows = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines()[:20]]
    rows += [dict(rows[0]), alpaca("Dana Whitfield, 41, write to dana@example.org soon.", "{}")]
    config = launch_config(tiny_model, tmp_path, rows, prepare={"check_seq_len": True})
    state = launch_sweep(config, name="prepared")
    assert state.status == "completed"
    spec = json.loads(state.spec_path.read_text())
    assert spec["data"]["train"] == str(state.path / "data" / "train.jsonl")
    train = (state.path / "data" / "train.jsonl").read_text()
    assert len(train.splitlines()) == 21 and "<EMAIL>" in train  # duplicate gone, PII redacted
    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    run = client.get_run(state.parent_run_id)
    logged = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert set(logged) == {"train", "heldout"}
    assert logged["train"].digest == state.digests["train"][:36]
    files = {a.path for a in client.list_artifacts(state.parent_run_id, "data_prep")}
    assert {"data_prep/report.html", "data_prep/manifest.json", "data_prep/removed.jsonl"} <= files


def test_launch_refuses_training_rows_copied_from_the_heldout_set(
    tiny_model: Path, tmp_path: Path
) -> None:
    from sweeps import launch_sweep
    from sweeps.config import config_from_dict
    from sweeps.driver.preflight import preflight
    from trainers.data_readers import DataError

    held = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()[:8]]
    copied = next(h for h in held if len(h["input"].split()) >= 14)
    rows = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines()[:20]]
    config = launch_config(tiny_model, tmp_path, [*rows, copied])
    with pytest.raises(DataError, match=r"1 training rows share a 13-gram with held-out or "
                       r"benchmark items \(first: train row 21 shares a 13-gram with held-out"):  # fmt: skip
        launch_sweep(config, name="contaminated")
    assert not (tmp_path / "sweeps").exists() and nothing_reached_mlflow(tmp_path)
    said: list[str] = []
    allowed = config_from_dict({**config, "data": {**config["data"], "allow_contaminated": True}})
    preflight(allowed, config_path=None, config_dir=tmp_path, progress=said.append)
    assert any(line.startswith("Warning: 1 training rows share") for line in said)


def test_rows_over_max_seq_len_are_measured_with_the_models_own_tokenizer(
    tiny_model: Path, tmp_path: Path
) -> None:
    from trainers.data import load_examples
    from trainers.models import load_tokenizer
    from trainers.tokenize import resolve_template, tokenize_examples

    source = DATA / "train.jsonl"
    tokenizer = load_tokenizer(tiny_model)
    examples = load_examples(source)
    lengths = [len(t.input_ids) for t in tokenize_examples(
        examples, tokenizer, resolve_template(tokenizer, "auto"))]  # fmt: skip
    limit = sorted(lengths)[len(lengths) // 2]  # the median: about half the rows are over it
    out = tmp_path / "out"
    assert main(["data", "prepare", str(source), "--out", str(out), "--no-decontaminate",
                 "--no-dedup", "--max-seq-len", str(limit), "--model", str(tiny_model)]) == 0  # fmt: skip
    removed = [json.loads(x) for x in (out / "removed.jsonl").read_text().splitlines()]
    over = {row for row, n in zip((e.row for e in examples), lengths, strict=True) if n > limit}
    assert {r["row"] for r in removed if r["step"] == "quality"} == over and over
    assert all(r["reason"].endswith(f"tokens, over max_seq_len {limit}") for r in removed)


def test_a_sweep_yaml_drives_prepare_with_its_prepare_section(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    rows = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines()[:20]]
    rows.append(alpaca("Um, met Ana Silva, uh, 30, a cook in Lyon.", '{"name": "Ana Silva"}'))
    config = launch_config(tiny_model, tmp_path, rows, prepare={"fillers": True, "redact": False})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["data", "prepare", "--config", str(path), "--out", str(out)]) == 0
    train = (out / "train.jsonl").read_text()
    assert "met Ana Silva, 30, a cook in Lyon." in train and "Um" not in train
    manifest = json.loads((out / "manifest.json").read_text())
    assert not next(s for s in manifest["steps"] if s["name"] == "redact")["enabled"]
    assert main(["data", "prepare", str(path), "--config", str(path), "--out", str(out)]) == 2
    assert "give input files or --config, not both" in capsys.readouterr().err


def test_clean_text_normalises_unicode_controls_speakers_and_fillers() -> None:
    from sweeps.prepare._clean import clean_text

    raw = "SPEAKER_1: um, the cafe\u0301 is\u00a0 open\x07\n\n\n\n[spk 2] uh yes,  you know, fine  "
    assert (
        clean_text(raw) == "SPEAKER_1: um, the caf\u00e9 is open\n\n[spk 2] uh yes, you know, fine"
    )
    assert clean_text(raw, speaker_tags=True, fillers=True) == (
        "Speaker 1: the caf\u00e9 is open\n\nSpeaker 2: yes, fine"
    )


def test_redaction_leaves_ages_dates_and_ids_alone() -> None:
    from sweeps.prepare._pii import redact_text

    kept = "Age 62, born 1990-05-12 (12/05/1990), order #123456789, in 2024, room 4521."
    assert redact_text(kept) == (kept, {})
    assert redact_text("card 4111 1111 1111 1112 fails Luhn")[1] == {}
    assert redact_text("host 999.1.1.1 is no address")[1] == {}


def test_a_five_row_classification_csv_with_one_letter_labels_keeps_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels, digits and letters are answers of their task: the quality step keeps them all."""
    source = tmp_path / "mc.csv"
    source.write_text("question,A,B,C,D,answer\nWhat is 2+2?,3,4,5,6,B\n"
                      "Capital of France?,Rome,Paris,Oslo,Bern,B\nH2O is?,water,salt,gold,iron,A\n"
                      "Largest planet?,Mars,Venus,Jupiter,Earth,C\n"
                      "Fastest animal?,snail,cheetah,cow,dog,B\n")  # fmt: skip
    out = tmp_path / "out"
    assert main(["data", "prepare", str(source), "--out", str(out), "--heldout-fraction",
                 "0.4", "--no-decontaminate"]) == 0  # fmt: skip
    rows = [json.loads(x) for name in ("train.jsonl", "heldout.jsonl")
            for x in (out / name).read_text().splitlines()]  # fmt: skip
    assert sorted(r["messages"][-1]["content"] for r in rows) == ["A", "B", "B", "B", "C"]
    assert "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6" in [r["messages"][0]["content"] for r in rows]
    said = capsys.readouterr().out
    assert "quality: 5 -> 5 rows; short answers (median 1 characters)" in said
    assert said.count("dedup_exact:") == 1  # each step said once


def test_sentiment_csv_and_dolly_rows_prepare_without_flags(tmp_path: Path) -> None:
    sentiment = tmp_path / "sentiment.csv"
    sentiment.write_text("text,sentiment\n" + "".join(
        f"Review {i}: {'loved' if i % 2 else 'hated'} it,{'positive' if i % 2 else 'negative'}\n"
        for i in range(10)))  # fmt: skip
    out = tmp_path / "s"
    assert main(["data", "prepare", str(sentiment), "--out", str(out), "--no-decontaminate",
                 "--no-near-dedup", "--heldout-fraction", "0.2",
                 "--instruction", "Positive or negative?"]) == 0  # fmt: skip
    held = [json.loads(x) for x in (out / "heldout.jsonl").read_text().splitlines()]
    assert sorted(r["label"] for r in held) == ["negative", "positive"]  # stratified by label
    assert all(r["messages"][0]["content"].startswith("Positive or negative?\n\nReview")
               for r in held)  # fmt: skip
    dolly = write_jsonl(tmp_path / "dolly.jsonl", [
        {"instruction": f"Summarise fact {i}.", "context": f"Fact {i} is that {i} is {i}.",
         "response": f"It says {i} equals itself.", "category": "summarization"}
        for i in range(10)])  # fmt: skip
    out = tmp_path / "d"
    assert main(["data", "prepare", str(dolly), "--out", str(out), "--no-decontaminate",
                 "--no-near-dedup"]) == 0  # fmt: skip
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and rows[0]["label"] == "summarization"
    assert rows[0]["messages"][0]["content"].endswith("\n\nFact 0 is that 0 is 0.")


def test_prepare_that_leaves_no_training_row_fails_naming_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "echo.jsonl", [
        {"instruction": f"say {w}", "output": f"say {w}"} for w in ("yes", "no", "maybe")])  # fmt: skip
    out = tmp_path / "out"
    assert main(["data", "prepare", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "error: no training row survived: step quality removed all 3 (instruction equals its "
        "response: 3); --keep-flagged or --no-quality (prepare: {drop_flagged: false} or "
        "{quality: false}) keeps them"]  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--columns", "foo"], "error: --columns: 'foo' is not NAME=COLUMN"),
        (["--columns", "output=nonexistent"],
         "columns mapping output=nonexistent: the file has no column 'nonexistent'"),
        (["--label-field", "mood"], "label field 'mood' is not a column of the file"),
        # values the options model refuses, before any file is read
        (["--near-threshold", "2"], "error: --near-threshold: Input should be less than or equal to 1"),
        (["--heldout-fraction", "0"], "error: --heldout-fraction: Input should be greater than 0"),
        (["--pii-kinds", "email,shoe_size"], "error: --pii-kinds: unknown kind shoe_size; known:"),
    ],
)  # fmt: skip
def test_column_flags_that_cannot_apply_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    source = tmp_path / "s.csv"
    source.write_text("text,sentiment\ngood,positive\nbad,negative\n")
    assert main(["data", "prepare", str(source), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


def test_prepare_prints_each_line_once_and_the_presidio_install_command_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two prepares in one process (launch prepares train and held-out files): no line twice
    within one, and the optional dependency's install command said the first time only."""
    from sweeps.prepare import _pii
    from sweeps.prepare._pii import PRESIDIO_INSTALL, presidio_names

    monkeypatch.setattr(_pii, "_HINTED", [])  # as in a fresh process
    outputs = []
    for run in ("one", "two"):
        assert main(["data", "prepare", str(DATA / "train.jsonl"), "--out",
                     str(tmp_path / run)]) == 0  # fmt: skip
        outputs.append(capsys.readouterr().out.splitlines())
    for lines in outputs:
        assert len(lines) == len(set(lines)) and sum(ln.startswith("redact:") for ln in lines) == 1
    if presidio_names() is None:  # the fast tier has no presidio
        said = [sum(PRESIDIO_INSTALL in ln for ln in lines) for lines in outputs]
        assert said == [1, 0]
        assert all(any("names need presidio (optional)" in ln for ln in lines) for lines in outputs)
