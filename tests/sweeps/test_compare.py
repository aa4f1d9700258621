"""``sweep compare``: real scoring of both sides, the report's numbers, MLflow, and a browser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals.paired import compare_paired
from sweeps.cli import main
from sweeps.scoring import all_rows, cache_path, load_spec
from sweeps.state import SweepState
from tests.sweeps.conftest import HELDOUT_ROWS, dump_dom, shared_cache


def cached_items(state: SweepState, adapter: Path | None) -> list[dict[str, Any]]:
    """What the scorer cached for one side: every held-out row, scored."""
    path = cache_path(all_rows(load_spec(state)), adapter)
    items: list[dict[str, Any]] = json.loads(path.read_text())["items"]
    return items


@pytest.fixture(scope="module")
def report(ab_sweep: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report")
    state: SweepState = ab_sweep["state"]
    args = ["compare", "champion", "base", "--out", str(out), "--samples", "5",
            "--state-dir", str(state.path.parent), "--mlflow-uri", ab_sweep["uri"]]  # fmt: skip
    with shared_cache(tmp_path_factory):
        assert main(args) == 0
    champion = ab_sweep["client"].get_model_version_by_alias("tiny", "champion")
    best = state.trials[champion.tags["lora_sweep.trial_id"]]
    assert best.trial_id == state.best_trial().trial_id  # type: ignore[union-attr]
    return {**ab_sweep, "out": out, "best": best}


def test_report_numbers_are_the_paired_test_on_every_heldout_row(report: dict[str, Any]) -> None:
    state, best = report["state"], report["best"]
    champion = cached_items(state, Path(best.adapter_path))
    base = cached_items(state, None)
    assert len(champion) == len(base) == HELDOUT_ROWS
    expected = compare_paired({i["id"]: i["score"] for i in base},
                              {i["id"]: i["score"] for i in champion})  # fmt: skip
    data = json.loads((report["out"] / "report.json").read_text())
    assert data["heldout_paired"] == expected.to_json()  # champion - base, per row
    assert data["a"] == f"champion (ab/{best.trial_id})" and data["b"] == "base model"
    markdown = (report["out"] / "report.md").read_text()
    ci = f"[{expected.ci_low:+.4f}, {expected.ci_high:+.4f}]"
    assert f"| {state.task_metric} | {expected.mean_b:.4f} | {expected.mean_a:.4f} |" in markdown
    assert ci in markdown and "## Generations (first 5)" in markdown


def test_report_is_logged_to_mlflow(report: dict[str, Any]) -> None:
    client = report["client"]
    state: SweepState = report["state"]
    runs = client.search_runs([state.experiment_id], "tags.`lora_sweep.kind` = 'compare'")
    assert len(runs) == 1
    files = {a.path for a in client.list_artifacts(runs[0].info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/curves.png"} <= files
    assert runs[0].data.params["b"] == "base model"


def test_report_renders_in_a_browser_with_table_cis_and_generations(
    report: dict[str, Any],
) -> None:
    from lxml import html as lxml_html

    dom = lxml_html.fromstring(dump_dom((report["out"] / "report.html").as_uri(), budget_ms=2000))
    rows = dom.xpath("//table[@id='heldout']//tr")
    header = [c.text_content() for c in rows[0]]
    assert header[4] == "95% CI" and header[1].startswith("A: champion")
    first = [c.text_content().strip() for c in rows[1]]
    data = json.loads((report["out"] / "report.json").read_text())["heldout_paired"]
    assert first[0] == report["state"].task_metric
    assert first[4] == f"[{data['ci_low']:+.4f}, {data['ci_high']:+.4f}]"
    generations = dom.xpath("//table[@id='generations']//tr[@class='generation']")
    assert len(generations) == 5
    champion = cached_items(report["state"], Path(report["best"].adapter_path))
    for row, item in zip(generations, champion, strict=False):
        cells = row.xpath("./td")
        assert cells[1].text_content() == item["reference"]
        assert cells[2].xpath(".//pre")[0].text_content().strip() == item["prediction"].strip()
        assert cells[0].text_content().strip()[:80] == item["prompt"].strip()[:80]
    image = dom.xpath("//img[@id='curves']/@src")[0]
    assert image.startswith("data:image/png;base64,") and len(image) > 5000


def test_two_trials_show_their_hyperparameter_diff(
    ab_sweep: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state: SweepState = ab_sweep["state"]
    first, second = sorted(state.trials)
    args = ["compare", f"ab/{first}", f"ab/{second}", "--out", str(tmp_path),
            "--state-dir", str(state.path.parent), "--mlflow-uri", ab_sweep["uri"]]  # fmt: skip
    assert main(args) == 0
    assert "held-out" in capsys.readouterr().out
    page = (tmp_path / "report.html").read_text()
    ranks = {state.trials[t].params["lora_r"] for t in (first, second)}
    assert ranks == {2, 4}
    assert '<tr class="differs"><td>lora_r</td>' in page
    markdown = (tmp_path / "report.md").read_text()
    r_first, r_second = (state.trials[t].params["lora_r"] for t in (first, second))
    assert f"- `lora_r`: {r_first} -> {r_second}" in markdown


def test_compare_refuses_what_cannot_be_compared(
    ab_sweep: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = str(ab_sweep["state"].path.parent)
    base = ["--state-dir", state_dir, "--mlflow-uri", ab_sweep["uri"]]
    assert main(["compare", "base", "base", *base]) == 2
    assert "at least one side must come from a sweep" in capsys.readouterr().err
    assert main(["compare", "champion", "ab", *base]) == 2  # the champion is ab's best trial
    assert "are the same adapter" in capsys.readouterr().err
    assert main(["compare", "nope@champion", "base", *base]) == 2
    assert "registered model 'nope' has no alias 'champion'" in capsys.readouterr().err


def test_an_adapter_directory_compares_only_on_its_own_base(
    report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    where = ["--state-dir", str(report["state"].path.parent), "--mlflow-uri", report["uri"]]
    copy = tmp_path / "copy"
    shutil.copytree(report["best"].adapter_path, copy)  # same weights: the cached scores serve
    assert main(["compare", str(copy), "ab", "--out", str(tmp_path / "r"), *where]) == 0
    assert "Scoring" not in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "report.json").read_text())["heldout_paired"]["delta"] == 0
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": "another/model"})
    )
    assert main(["compare", str(copy), "ab", *where]) == 2
    assert "the adapter was trained on another/model, not on the base model of sweep ab" in (
        capsys.readouterr().err
    )


def test_registry_references_resolve_to_the_sweep_copy_or_the_registry_files(
    report: dict[str, Any], tmp_path: Path
) -> None:
    from sweeps.refs import resolve_adapter
    from sweeps.scoring import adapter_digest

    state, uri, best = report["state"], report["uri"], report["best"]
    for ref in ("champion", "tiny@champion", "models:/tiny@champion", "models:/tiny/1"):
        found = resolve_adapter(ref, state_dir=state.path.parent, mlflow_uri=uri)
        assert found.path == Path(best.adapter_path) and found.trial_id == best.trial_id
    elsewhere = resolve_adapter("champion", state_dir=tmp_path / "no-sweeps", mlflow_uri=uri)
    assert elsewhere.path != Path(best.adapter_path)  # the registry's files, downloaded
    assert adapter_digest(elsewhere.path) == adapter_digest(Path(best.adapter_path))
    assert Path(elsewhere.base_model) == Path(load_spec(state).model_path)


def test_model_output_cannot_inject_markup_into_the_report(report: dict[str, Any]) -> None:
    from sweeps.compare import render

    context = json.loads((report["out"] / "report.json").read_text())
    context["curves"] = None
    context["generations"][0]["a"] = "<script>alert('x')</script>"
    html, markdown = render(context)
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<script>alert('x')</script>" in markdown  # Markdown is text; a renderer escapes it
