"""``sweep compare``: the report's decision, row order, prompts and orientation (built from
item scores, no training), then real scoring of both sides, MLflow, and a browser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from evals.paired import compare_paired
from sweeps.ab.compare import skipped_benchmarks, write_report
from sweeps.ab.compare_assemble import assemble
from sweeps.ab.compare_report import Gathered, ReportContext
from sweeps.cli.main import main
from sweeps.serving.scoring import ItemScores, all_rows, cache_path, load_spec
from sweeps.serving.sides import NO_ADAPTER, Side, Turn, conversation
from sweeps.tracking.state import SweepState, TrialRecord
from tests.sweeps.conftest import HELDOUT_ROWS, ABReport, FinishedSweep, dump_dom

SYSTEM, TASK = "You turn notes into JSON records.", "Extract the contact from this note as JSON."
OFFLINE = ("{t}: the Hugging Face Hub is offline and no local mirror is set (Couldn't reach "
           "'{t}' on the Hub (OfflineModeIsEnabled)); set $LORA_SWEEP_BENCHMARK_MIRROR or "
           "benchmarks.mirror to a directory of Hugging Face-schema jsonl files")  # fmt: skip


# --------------------------------------------------------------------------- a constructed pair
def chatml(note: str) -> str:
    """A held-out prompt as SmolLM2's chat template renders it (generation prompt at the end)."""
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{TASK}\n\n{note}"
            "<|im_end|>\n<|im_start|>assistant\n")  # fmt: skip


def row_id(i: int) -> str:
    return f"{i:05d}-abcdef{i:02d}"


def item_scores(side: str, values: list[float], long: dict[int, str] | None = None) -> ItemScores:
    items = [{"id": row_id(i), "prompt": chatml(f"Note {i}: Ana, 30, nurse, Porto."),
              "reference": f'{{"name": "Ana {i}"}}',
              "prediction": (long or {}).get(i, f"{side} says {i}"), "score": v,
              "exact_match": float(v == 1.0)} for i, v in enumerate(values)]  # fmt: skip
    return ItemScores(metrics={"heldout/loss": 0.5 if side == "A" else 0.9}, items=items)


@pytest.fixture
def home(tmp_path: Path) -> SweepState:
    def trial(tid: str, lr: float, r: int, device_s: float) -> TrialRecord:
        metrics = {"cost/device_seconds": device_s, "cost/wall_seconds": device_s / 2,
                   "train/seconds": device_s / 3, "tokens_trained": 12_345.0}  # fmt: skip
        params = {"learning_rate": lr, "lora_r": r, "lora_dropout": 0.05, "num_epochs": 1}
        return TrialRecord(tid, f"run-{tid}", params, status="completed", metrics=metrics)

    trials = {"t1": trial("t1", 0.0019420829011663684, 8, 120.0),
              "t2": trial("t2", 0.0005, 4, 240.0), "t3": trial("t3", 0.01, 2, 3240.0)}  # fmt: skip
    return SweepState(name="ab", directory=str(tmp_path / "ab"), config_path="",
                      objective_metric="heldout/field_f1", objective_mode="max",
                      task_metric="field_f1", mlflow_uri="", trials=trials, base_model="tiny")  # fmt: skip


def trial_side(state: SweepState, trial_id: str) -> Side:
    return Side(f"ab/{trial_id}", f"ab/{trial_id}", adapter=Path(f"/adapters/{trial_id}"),
                state=state, record=state.trials[trial_id], config={"resources": {"cpu": 2}})  # fmt: skip


BASE_SIDE = Side("base", "base model")


def build(
    sides: tuple[Side, Side], scores: tuple[ItemScores, ItemScores], *, home: SweepState,
    out: Path, gathered: Gathered | None = None,
) -> tuple[ReportContext, dict[str, Any]]:  # fmt: skip
    """The report written to ``out``; returns its context and the three files read back."""
    from lxml import html as lxml_html

    context = assemble(*sides, home=home, metric="field_f1", scores=scores,
                       gathered=gathered or Gathered(), samples=3)  # fmt: skip
    write_report(context, out)
    files = {"html": (out / "report.html").read_text(), "md": (out / "report.md").read_text(),
             "json": (out / "report.json").read_text()}  # fmt: skip
    return context, {**files, "dom": lxml_html.fromstring(files["html"]),
                     "data": json.loads(files["json"])}  # fmt: skip


def cells(row: Any) -> list[str]:
    return [" ".join(c.text_content().split()) for c in row.xpath("./td|./th")]


def heldout_row(report: ABReport) -> tuple[list[str], list[str]]:
    rows = report["dom"].xpath("//table[@id='heldout']//tr")
    return cells(rows[0]), cells(rows[1])


MIXED_A = [1.0, 0.0, 0.5, 0.25, 1.0, 0.0, 1.0]  # row: 0 won, 1 and 2 lost, 3 and 5 still wrong,
MIXED_B = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.5]  # 4 tied (both right), 6 won
LONG = "A says " + "the note names Ana; " * 30  # over 300 characters: folded in the HTML


def test_losses_come_first_prompts_are_turns_and_the_sides_agree_everywhere(
    home: SweepState, tmp_path: Path
) -> None:
    scores = (item_scores("A", MIXED_A, long={1: LONG}), item_scores("B", MIXED_B))
    cut: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset({row_id(1)}))
    context, report = build((trial_side(home, "t1"), trial_side(home, "t2")), scores, home=home,
                            out=tmp_path, gathered=Gathered(max_new_tokens=8, cut=cut))  # fmt: skip
    dom = report["dom"]
    # losses first (the largest first), then the rows A still gets wrong, then its wins
    assert dom.xpath("//h3/@id") == ["group-lost", "group-wrong", "group-won"]
    shown = dom.xpath("//table[starts-with(@id, 'rows-')]//tr[@class='item']/@data-id")
    assert shown == [row_id(i) for i in (1, 2, 5, 3, 0, 6)]
    assert [g["key"] for g in report["data"]["groups"]] == ["lost", "wrong", "won"]
    first_loss = dom.xpath("//table[@id='rows-lost']//tr[@class='item']")[0]
    assert cells(first_loss)[-1] == "-1.00"
    # prompts as conversation turns, no chat-template tokens anywhere
    for row in dom.xpath("//tr[@class='item' or @class='generation']"):
        prompt = row.xpath("./td[.//div[@class='turns']]")[0]
        assert prompt.xpath(".//span[@class='role']/text()") == ["system", "user"]
        assert prompt.xpath(".//pre/text()")[0] == SYSTEM
        assert prompt.xpath(".//pre/text()")[1].startswith(f"{TASK}\n\nNote ")
    for text in (report["html"], report["md"], report["json"]):
        assert "<|im_start|>" not in text and "im_end" not in text
    assert "**system:** You turn notes into JSON records. **user:** Extract" in report["md"]
    # the full output in the HTML (folded), cut in the Markdown with a pointer to the rest
    assert first_loss.xpath(".//details/pre[@class='gen-a']/text()") == [LONG]
    assert LONG not in report["md"] and LONG[:100] in report["md"]
    assert "report.html and report.json have them in full" in report["md"]
    assert "reached the 8-token limit" in cells(first_loss)[4]
    assert "B says 1 (1.00; cut at 8 tokens)" in report["md"]
    # the hyperparameter diff, rounded, the differing rows first and marked
    params = {cells(r)[0]: (cells(r)[1:3], r.get("class")) for r in
              dom.xpath("//table[@id='params']//tr[td]")}  # fmt: skip
    assert params["learning_rate"] == (["0.00194", "0.0005"], "differs")
    assert params["lora_r"] == (["8", "4"], "differs")
    assert params["lora_dropout"] == (["0.05", "0.05"], None)
    assert "| `learning_rate` | 0.00194 | 0.0005 | differ |" in report["md"]
    assert "| `lora_dropout` | 0.05 | 0.05 | same |" in report["md"]
    header = [" ".join(th.text_content().split()) for th in
              dom.xpath("//table[@id='params']//th")]  # fmt: skip
    assert header == ["hyperparameter", "A: ab/t1", "B: ab/t2", "A and B"]  # no unheaded column
    # A is A everywhere: the JSON, the HTML table, the Markdown, the counts
    paired = report["data"]["heldout_paired"]
    assert paired["mean_a"] == pytest.approx(sum(MIXED_A) / 7)
    assert paired["mean_b"] == pytest.approx(sum(MIXED_B) / 7)
    assert paired["delta"] == pytest.approx(paired["mean_a"] - paired["mean_b"])
    assert (paired["a_better"], paired["b_better"], paired["ties"]) == (3, 2, 2)
    header, first = heldout_row(report)
    assert header[1:4] == ["A: ab/t1", "B: ab/t2", "delta (A - B)"]
    numbers = [f"{paired['mean_a']:.4f}", f"{paired['mean_b']:.4f}", f"{paired['delta']:+.4f}"]
    assert first[:4] == ["field_f1", *numbers]
    assert f"| field_f1 | {' | '.join(numbers)} |" in report["md"]
    wins = " ".join(dom.get_element_by_id("wins").text_content().split())
    assert wins.startswith("A better on 3 rows, worse on 2, tied on 2.")
    items = {i["id"]: i for i in report["data"]["items"]}
    assert [items[row_id(i)]["a_score"] for i in range(7)] == MIXED_A
    assert items[row_id(1)]["a"] == LONG and items[row_id(1)]["b"] == "B says 1"
    assert context.decision == "no_difference"
    assert context.headline.startswith("No significant difference between A (ab/t1) and B (ab/t2)")


def test_a_better_pair_is_oriented_the_same_in_html_markdown_json_and_headline(
    home: SweepState, tmp_path: Path
) -> None:
    a_scores = item_scores("A", [1.0] * 12)
    b_scores = item_scores("B", [0.0] * 9 + [1.0] * 3)
    champion = trial_side(home, "t1")
    context, report = build((champion, BASE_SIDE), (a_scores, b_scores), home=home,
                            out=tmp_path / "ab")  # fmt: skip
    expected = compare_paired(a_scores.by_item(), b_scores.by_item())  # A - B
    paired = report["data"]["heldout_paired"]
    assert (paired["mean_a"], paired["mean_b"], paired["delta"]) == (1.0, 0.25, 0.75)
    assert (paired["ci_low"], paired["ci_high"], paired["p_value"]) == (
        expected.ci_low, expected.ci_high, expected.p_value)  # fmt: skip
    assert (paired["a_better"], paired["b_better"]) == (9, 0) and paired["significant"]
    assert context.decision == report["data"]["decision"] == "a_better"
    assert context.headline == (
        "A (ab/t1) beats B (base) on held-out field_f1: +0.750 [95% CI "
        f"{expected.ci_low:+.3f}, {expected.ci_high:+.3f}], 9 of 12 rows better, 0 worse; "
        "no benchmarks"
    )
    assert report["dom"].get_element_by_id("headline").text_content() == context.headline
    assert f"**{context.headline}**" in report["md"]
    header, first = heldout_row(report)
    assert header[1:3] == ["A: ab/t1", "B: base model"]
    assert first[1:4] == ["1.0000", "0.2500", "+0.7500"]
    assert "| field_f1 | 1.0000 | 0.2500 | +0.7500 |" in report["md"]
    assert not report["data"]["groups"][0]["rows"] and not report["data"]["groups"][1]["rows"]
    params = report["dom"].xpath("//table[@id='params']//tr[td]")
    assert {len(cells(r)) for r in params} == {2}  # the base has no column of NO_ADAPTER cells
    assert NO_ADAPTER not in report["dom"].get_element_by_id("params").text_content()
    assert {cells(r)[0]: cells(r)[1] for r in params}["learning_rate"] == "0.00194"
    assert "B (base model): no adapter, no hyperparameters." in report["html"]
    assert "| `learning_rate` | 0.00194 |\n" in report["md"]
    sides = report["data"]["sides"]
    assert [(s["key"], s["ref"]) for s in sides] == [("A", "ab/t1"), ("B", "base")]
    assert sides[1]["source"] == NO_ADAPTER
    cost = report["data"]["cost"]
    assert cost[0]["device_s"] == 120.0 and cost[0]["sweep_trials"] == 3
    assert cost[0]["sweep_device_hours"] == pytest.approx(home.device_hours()) == 1.0
    assert cost[1]["note"] == "base model: no training" and cost[1]["device_s"] is None
    assert "ab (3 trials)" in cells(report["dom"].xpath("//table[@id='cost']//tr")[1])
    # the same pair the other way round: every sign and side flips with it
    context, report = build((BASE_SIDE, champion), (b_scores, a_scores), home=home,
                            out=tmp_path / "ba")  # fmt: skip
    paired = report["data"]["heldout_paired"]
    assert (paired["mean_a"], paired["mean_b"], paired["delta"]) == (0.25, 1.0, -0.75)
    assert (paired["a_better"], paired["b_better"]) == (0, 9)
    assert context.decision == "b_better"
    worse = "A (base) is worse than B (ab/t1) on held-out field_f1: -0.750 [95% CI"
    assert context.headline.startswith(worse)
    assert heldout_row(report)[1][1:4] == ["0.2500", "1.0000", "-0.7500"]
    assert [cells(r)[0] for r in report["dom"].xpath("//table[@id='rows-lost']//tr[td]")] == [
        row_id(i) for i in range(9)
    ]


def test_each_skipped_benchmark_is_one_line_and_the_hint_is_said_once(
    home: SweepState, tmp_path: Path
) -> None:
    tasks = ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"]
    tag = "; ".join(OFFLINE.format(t=t) for t in tasks)
    quoted = "hellaswag: its data could not be loaded (ValueError: row 3; field: ctx); check it"
    parsed, _ = skipped_benchmarks(f"{quoted}; {OFFLINE.format(t='mmlu')}", tasks, scored=tasks)
    assert [(s.task, s.reason) for s in parsed] == [  # an error's own "; x: " splits nothing
        ("hellaswag", "its data could not be loaded (ValueError: row 3; field: ctx)"),
        ("mmlu", skipped_benchmarks(OFFLINE.format(t="mmlu"), tasks, scored=tasks)[0][0].reason),
    ]
    skipped, hints = skipped_benchmarks(tag, [*tasks, "gsm8k"], scored=[])
    assert [s.task for s in skipped] == [*tasks, "gsm8k"]
    assert skipped[0].reason == ("the Hugging Face Hub is offline and no local mirror is set "
                                 "(Couldn't reach 'arc_challenge' on the Hub (OfflineModeIsEnabled))")  # fmt: skip
    assert skipped[-1].reason == "not scored for both sides"
    assert hints == ["set $LORA_SWEEP_BENCHMARK_MIRROR or benchmarks.mirror to a directory of "
                     "Hugging Face-schema jsonl files"]  # fmt: skip
    scores = (item_scores("A", [1.0, 0.0]), item_scores("B", [0.0, 0.0]))
    context, report = build((trial_side(home, "t1"), BASE_SIDE), scores, home=home, out=tmp_path,
                            gathered=Gathered(skipped=skipped, hints=hints))  # fmt: skip
    lines = report["dom"].xpath("//ul[@id='benchmarks-skipped']/li")
    assert [li.text_content().split(":")[0] for li in lines] == [*tasks, "gsm8k"]
    for text in (report["html"], report["md"]):
        assert text.count("LORA_SWEEP_BENCHMARK_MIRROR") == 1
        assert text.count("OfflineModeIsEnabled") == 4
    assert "- **mmlu**: the Hugging Face Hub is offline" in report["md"]
    assert context.headline.endswith("; benchmarks not compared (5 skipped)")
    assert skipped_benchmarks("none", tasks, scored=tasks) == ([], [])


@pytest.mark.parametrize(
    ("prompt", "turns"),
    [
        (chatml("Note."), [("system", SYSTEM), ("user", f"{TASK}\n\nNote.")]),
        ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n",
         [("system", "Be brief."), ("user", "Hi")]),
        ("<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
         "<start_of_turn>user\nAgain<end_of_turn>\n<start_of_turn>model\n",
         [("user", "Hi"), ("assistant", "Hello"), ("user", "Again")]),
        ("Be brief.\n\n### Instruction:\nHi\n\n### Response:\n",
         [("system", "Be brief."), ("user", "Hi")]),
        ("<s>plain text prompt\n", [("prompt", "plain text prompt")]),
    ],
)  # fmt: skip
def test_prompts_read_back_as_turns_from_common_chat_templates(
    prompt: str, turns: list[tuple[str, str]]
) -> None:
    assert conversation(prompt) == [Turn(role, content) for role, content in turns]


# --------------------------------------------------------------------------- a real sweep
def cached_items(state: SweepState, adapter: Path | None) -> list[dict[str, Any]]:
    """What the scorer cached for one side: every held-out row, scored."""
    path = cache_path(all_rows(load_spec(state)), adapter)
    items: list[dict[str, Any]] = json.loads(path.read_text())["items"]
    return items


@pytest.fixture
def report(ab_report: ABReport) -> ABReport:
    return ab_report


def test_report_numbers_are_the_paired_test_on_every_heldout_row(report: ABReport) -> None:
    from sweeps.serving.sides import utc

    state, best = report.state, report.best
    champion = cached_items(state, Path(best.adapter_path))
    base = cached_items(state, None)
    assert len(champion) == len(base) == HELDOUT_ROWS
    expected = compare_paired({i["id"]: i["score"] for i in champion},
                              {i["id"]: i["score"] for i in base})  # champion - base, per row  # fmt: skip
    data = json.loads((report.out / "report.json").read_text())
    paired = data["heldout_paired"]  # A (the champion) - B (the base), A's mean first
    assert paired["mean_a"] == pytest.approx(sum(i["score"] for i in champion) / HELDOUT_ROWS)
    assert paired["mean_b"] == pytest.approx(sum(i["score"] for i in base) / HELDOUT_ROWS)
    assert (paired["delta"], paired["ci_low"], paired["ci_high"], paired["a_better"],
            paired["b_better"]) == (expected.delta, expected.ci_low, expected.ci_high,
                                    expected.candidate_better, expected.reference_better)  # fmt: skip
    # the trial as the study's pictures and optuna-dashboard number it, too
    assert data["a"] == f"champion (ab/{best.trial_id}, trial #{best.number})"
    assert best.number is not None and data["b"] == "base model"
    markdown = (report.out / "report.md").read_text()
    ci = f"[{expected.ci_low:+.4f}, {expected.ci_high:+.4f}]"
    means = f"{paired['mean_a']:.4f} | {paired['mean_b']:.4f} | {expected.delta:+.4f}"
    assert f"| {state.task_metric} | {means} | {ci} |" in markdown
    assert "## More generations (" in markdown and "<|im_start|>" not in markdown
    version = report.version  # the registry's version and its date, for the side it named
    assert data["sides"][0]["registry"] == {
        "name": "tiny", "version": str(version.version), "aliases": ["champion"],
        "created": utc(version.creation_timestamp / 1000),
    }  # fmt: skip
    assert data["sides"][1]["registry"] is None and data["sides"][1]["source"] == NO_ADAPTER
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", data["generated"])
    cost = data["cost"][0]  # the trial's cost and its whole sweep's
    assert cost["device_s"] == best.metrics["cost/device_seconds"] and cost["sweep"] == "ab"
    assert cost["sweep_device_hours"] == pytest.approx(state.device_hours())
    assert data["max_new_tokens"] == 256  # the sweep's 8, raised so answers are whole


def test_report_is_logged_to_mlflow(report: ABReport) -> None:
    client = report.client
    state: SweepState = report.state
    data = json.loads((report.out / "report.json").read_text())
    runs = client.search_runs([state.experiment_id], "tags.`lora_sweep.kind` = 'compare'")
    runs = [r for r in runs if r.data.tags["compare.headline"] == data["headline"]]
    assert len(runs) == 1  # this report's (other tests compare other sides of the same sweep)
    files = {a.path for a in client.list_artifacts(runs[0].info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/report.json",
            "report/curves.png"} <= files  # fmt: skip
    assert runs[0].data.params["b"] == "base model"
    assert runs[0].data.metrics["heldout/delta"] == pytest.approx(data["heldout_paired"]["delta"])


def test_best_knows_the_trial_that_is_already_champion(
    report: ABReport, capsys: pytest.CaptureFixture[str]
) -> None:
    state: SweepState = report.state
    capsys.readouterr()
    assert main(["best", state.name, "--state-dir", str(state.path.parent)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"already the champion (tiny version {report.version.version})" in out
    assert "next: sweep promote" not in out


def test_report_renders_in_a_browser_with_table_cis_and_generations(
    report: ABReport,
) -> None:
    from lxml import html as lxml_html

    dom = lxml_html.fromstring(dump_dom((report.out / "report.html").as_uri(), budget_ms=2000))
    data = json.loads((report.out / "report.json").read_text())
    assert dom.get_element_by_id("headline").text_content() == data["headline"]
    assert " A (champion) and B (base) on held-out " in data["headline"]  # tied: the tiny model
    rows = dom.xpath("//table[@id='heldout']//tr")
    header = [c.text_content() for c in rows[0]]
    assert header[4] == "95% CI" and header[1].startswith("A: champion")
    first = [c.text_content().strip() for c in rows[1]]
    paired = data["heldout_paired"]
    assert first[0] == report.state.task_metric
    assert first[1:3] == [f"{paired['mean_a']:.4f}", f"{paired['mean_b']:.4f}"]
    assert first[4] == f"[{paired['ci_low']:+.4f}, {paired['ci_high']:+.4f}]"
    assert "tiny version 1 (champion)" in dom.get_element_by_id("side-a-info").text_content()
    generations = dom.xpath("//table[@id='generations']//tr[@class='generation']")
    # the held-out rows not already shown under "Rows to look at": no row twice
    shown = {row["id"] for group in data["groups"] for row in group["rows"]}
    champion = [item for item in cached_items(report.state, Path(report.best.adapter_path))
                if item["id"] not in shown][:5]  # fmt: skip
    assert len(generations) == len(champion) == min(5, data["rows"] - len(shown))
    assert not shown & {row["id"] for row in data["generations"]}
    for row, item in zip(generations, champion, strict=True):
        cells = row.xpath("./td")
        turns = conversation(item["prompt"])
        assert turns and turns[-1].role == "user"
        assert cells[0].xpath(".//span[@class='role']/text()") == [t.role for t in turns]
        assert [p.text_content() for p in cells[0].xpath(".//pre")] == [t.content for t in turns]
        assert "<|" not in cells[0].text_content()
        assert cells[1].text_content() == item["reference"]
        assert cells[2].xpath(".//pre")[0].text_content().strip() == item["prediction"].strip()
    image = dom.xpath("//img[@id='curves']/@src")[0]
    assert image.startswith("data:image/png;base64,") and len(image) > 5000


def test_two_trials_show_their_hyperparameter_diff(
    ab_sweep: FinishedSweep, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lxml import html as lxml_html

    state: SweepState = ab_sweep.state
    first, second = sorted(state.trials)
    args = ["compare", f"ab/{first}", f"ab/{second}", "--out", str(tmp_path),
            "--state-dir", str(state.path.parent), "--mlflow-uri", ab_sweep.uri]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and f"A (ab/{first})" in out and f"B (ab/{second})" in out
    dom = lxml_html.fromstring((tmp_path / "report.html").read_text())
    params = {r.xpath("./td")[0].text_content(): r for r in
              dom.xpath("//table[@id='params']//tr[td]")}  # fmt: skip
    r_first, r_second = (state.trials[t].params["lora_r"] for t in (first, second))
    assert {r_first, r_second} == {2, 4}
    assert params["lora_r"].get("class") == "differs"
    shown = {
        name: [c.text_content() for c in row.xpath("./td")[1:3]] for name, row in params.items()
    }
    assert shown["lora_r"] == [str(r_first), str(r_second)]
    assert shown["learning_rate"] == ["0.001", "0.001"]  # rounded, and the same: not marked
    assert params["learning_rate"].get("class") is None
    assert "-" not in {value for values in shown.values() for value in values}
    markdown = (tmp_path / "report.md").read_text()
    assert f"| `lora_r` | {r_first} | {r_second} | differ |" in markdown
    cost = json.loads((tmp_path / "report.json").read_text())["cost"]
    assert [c["trial"] for c in cost] == [first, second]
    assert {c["sweep_trials"] for c in cost} == {2}


def test_compare_refuses_what_cannot_be_compared(
    ab_sweep: FinishedSweep, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = str(ab_sweep.state.path.parent)
    base = ["--state-dir", state_dir, "--mlflow-uri", ab_sweep.uri]
    assert main(["compare", "base", "base", *base]) == 2
    assert "at least one side must come from a sweep" in capsys.readouterr().err
    assert main(["compare", "champion", "ab", *base]) == 2  # the champion is ab's best trial
    assert "are the same adapter" in capsys.readouterr().err
    assert main(["compare", "nope@champion", "base", *base]) == 2
    assert "registered model 'nope' has no alias 'champion'" in capsys.readouterr().err


def test_an_adapter_directory_compares_only_on_its_own_base(
    report: ABReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    where = ["--state-dir", str(report.state.path.parent), "--mlflow-uri", report.uri]
    copy = tmp_path / "copy"
    shutil.copytree(report.best.adapter_path, copy)  # same weights: the cached scores serve
    assert main(["compare", str(copy), "ab", "--out", str(tmp_path / "r"), *where]) == 0
    assert "Scoring" not in capsys.readouterr().out
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["heldout_paired"]["delta"] == 0 and data["decision"] == "no_difference"
    params = {p["name"]: p for p in data["params"]}  # what the bare adapter's config records
    assert params["lora_r"]["a"] == params["lora_r"]["b"] == str(report.best.params["lora_r"])
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": "another/model"})
    )
    assert main(["compare", str(copy), "ab", *where]) == 2
    assert "the adapter was trained on another/model, not on the base model of sweep ab" in (
        capsys.readouterr().err
    )


def test_registry_references_resolve_to_the_sweep_copy_or_the_registry_files(
    report: ABReport, tmp_path: Path
) -> None:
    from sweeps.serving.refs import resolve_adapter
    from sweeps.serving.scoring import adapter_digest

    state, uri, best = report.state, report.uri, report.best
    for ref in ("champion", "tiny@champion", "models:/tiny@champion", "models:/tiny/1"):
        found = resolve_adapter(ref, state_dir=state.path.parent, mlflow_uri=uri)
        assert found.path == Path(best.adapter_path) and found.trial_id == best.trial_id
    elsewhere = resolve_adapter("champion", state_dir=tmp_path / "no-sweeps", mlflow_uri=uri)
    assert elsewhere.path != Path(best.adapter_path)  # the registry's files, downloaded
    assert adapter_digest(elsewhere.path) == adapter_digest(Path(best.adapter_path))
    assert Path(elsewhere.base_model) == Path(load_spec(state).model_path)


def test_model_output_cannot_inject_markup_into_the_report(report: ABReport) -> None:
    from sweeps.ab.compare import render

    context = json.loads((report.out / "report.json").read_text())
    context["curves"] = None
    context["generations"][0]["a"] = "<script>alert('x')</script>"
    context["generations"][0]["turns"][0]["content"] = "<img src=x onerror=alert(1)>"
    html, markdown = render(context)
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert('x')</script>" in markdown  # Markdown is text; a renderer escapes it
