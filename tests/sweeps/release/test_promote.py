"""``sweep promote``: the gate on constructed per-item scores, through a real MLflow registry.

One small sweep runs once for the module. Each test plants per-item held-out scores where the
scorer caches them (the same key a real scoring run writes), then runs ``sweep promote`` and reads
the registry back. Each test uses its own registered model name, so the tests are independent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sweeps.cli.main import main
from sweeps.serving.scoring import ItemScores, all_rows, cache_path, load_spec, store_scores
from sweeps.tracking.state import SweepState, load_state
from tests.sweeps.conftest import HELDOUT_ROWS, FinishedSweep, finished_sweep

PLANTED = "cache-planted"  # planted scores stay out of the cache other modules score into


@pytest.fixture(scope="module")
def promo(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedSweep:
    return finished_sweep(tiny_model, tmp_path_factory, name="promo", cache=PLANTED)


@pytest.fixture(autouse=True)
def _planted_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORA_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / PLANTED))


def trials(state: SweepState) -> list[str]:
    return sorted(state.trials)


def plant(state: SweepState, trial: str | None, scores: list[float]) -> None:
    """Per-item held-out scores for a trial's adapter (None: the base model), where promote
    reads them."""
    spec = all_rows(load_spec(state))
    adapter = Path(state.trials[trial].adapter_path or "") if trial else None
    items = [{"id": f"row-{i:02d}", "prompt": f"p{i}", "reference": f"r{i}",
              "prediction": f"out{i}", "score": s, "exact_match": float(s == 1.0)}
             for i, s in enumerate(scores)]  # fmt: skip
    mean = sum(scores) / len(scores)
    metrics = {"heldout/loss": 1.0, f"heldout/{spec.task_metric}": mean}
    store_scores(cache_path(spec, adapter), ItemScores(metrics, items))


def promote(promo: FinishedSweep, ref: str, name: str, *extra: str) -> int:
    state_dir = str(promo.state.path.parent)
    return main(["promote", ref, "--model-name", name, "--state-dir", state_dir, *extra])


def test_promotes_a_significant_gain_over_the_base_then_over_the_champion(
    promo: FinishedSweep, capsys: pytest.CaptureFixture[str]
) -> None:
    state, client = promo.state, promo.client
    first, second = trials(state)
    plant(state, None, [0.0] * HELDOUT_ROWS)
    plant(state, first, [0.30 + 0.02 * i for i in range(HELDOUT_ROWS)])
    plant(state, second, [0.60 + 0.02 * i for i in range(HELDOUT_ROWS)])
    assert promote(promo, f"promo/{first}", "gain") == 0
    assert "Promoted: gain v1 is champion, on the evidence of heldout." in capsys.readouterr().out
    assert promote(promo, f"promo/{second}", "gain") == 0
    out = capsys.readouterr().out
    assert "delta +0.3000" in out and "vs champion gain v1" in out
    champion = client.get_model_version_by_alias("gain", "champion")
    assert str(champion.version) == "2"
    assert str(client.get_model_version_by_alias("gain", "previous").version) == "1"
    tags = champion.tags
    assert tags["lora_sweep.trial_id"] == second and tags["gate.passed"] == "true"
    assert tags["base_model.sha256"] == state.base_model_digest
    assert float(tags["gate.ci_low"]) > 0 and tags["promotion.forced"] == "false"
    assert tags["gate.require"] == "heldout" and tags["gate.carried_by"] == "heldout"
    assert champion.run_id == state.trials[second].run_id


def test_a_version_holds_adapter_tokenizer_base_hash_and_eval_summary(
    promo: FinishedSweep, tmp_path: Path
) -> None:
    import mlflow.artifacts

    state = promo.state
    first = trials(state)[0]
    plant(state, None, [0.0] * HELDOUT_ROWS)
    plant(state, first, [1.0] * HELDOUT_ROWS)
    assert promote(promo, f"promo/{first}", "files") == 0
    version = promo.client.get_model_version_by_alias("files", "champion")
    source = promo.client.get_model_version_download_uri("files", version.version)
    path = Path(mlflow.artifacts.download_artifacts(
        source, dst_path=str(tmp_path), tracking_uri=promo.uri))  # fmt: skip
    assert (path / "adapter" / "adapter_model.safetensors").is_file()
    assert "im_start" in (path / "tokenizer" / "chat_template.jinja").read_text()
    base = json.loads((path / "base_model.json").read_text())
    assert base["sha256"] == state.base_model_digest and Path(base["path"]).is_dir()
    summary = json.loads((path / "eval_summary.json").read_text())
    assert summary["paired"]["test"] == "mcnemar" and summary["paired"]["n"] == HELDOUT_ROWS
    assert summary["paired"]["p_value"] < 0.001 and summary["against"] == "the base model"
    items = [json.loads(x) for x in (path / "heldout_items.jsonl").read_text().splitlines()]
    assert [(i["candidate_score"], i["incumbent_score"]) for i in items] == [(1.0, 0.0)] * 12


def test_refuses_a_candidate_that_is_not_significantly_better(
    promo: FinishedSweep, capsys: pytest.CaptureFixture[str]
) -> None:
    state, client = promo.state, promo.client
    first = trials(state)[0]
    plant(state, None, [0.0] * HELDOUT_ROWS)
    plant(state, first, [1.0, 1.0] + [0.0] * (HELDOUT_ROWS - 2))  # 2 of 12: McNemar p = 0.5
    assert promote(promo, f"promo/{first}", "weak") == 1
    out = capsys.readouterr().out
    assert "McNemar p=0.5" in out
    assert "refused: not significantly better than the base model on held-out" in out
    assert not client.search_registered_models(filter_string="name = 'weak'")


def test_refuses_a_guard_regression_and_force_records_the_reason(
    promo: FinishedSweep, capsys: pytest.CaptureFixture[str]
) -> None:
    state, client = promo.state, promo.client
    first = trials(state)[0]
    plant(state, None, [0.0] * HELDOUT_ROWS)
    plant(state, first, [1.0] * HELDOUT_ROWS)
    saved = load_state(state.name, state_dir=state.path.parent)
    verdict = "mmlu: 0.2400 vs base 0.2900 (drop 0.0500 > margin 0.0200)"  # as the sweep writes
    saved.trials[first].guard = [verdict]
    saved.save()
    try:
        assert promote(promo, f"promo/{first}", "guarded") == 1
        out = capsys.readouterr().out
        assert f"refused: guard benchmark regressed: {verdict}" in out
        assert not client.search_registered_models(filter_string="name = 'guarded'")
        reason = "MMLU drop accepted: this adapter serves JSON extraction only"
        assert promote(promo, f"promo/{first}", "guarded", "--force", reason) == 0
        assert "overridden: guard benchmark regressed" in capsys.readouterr().out
    finally:
        saved.trials[first].guard = []
        saved.save()
    version = client.get_model_version_by_alias("guarded", "champion")
    assert version.tags["promotion.forced"] == "true"
    assert version.tags["promotion.reason"] == reason
    assert "mmlu" in version.tags["promotion.overrode"] and version.tags["gate.passed"] == "false"


def test_refuses_a_changed_or_unresolvable_base_model(
    promo: FinishedSweep, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = promo.state
    copy_dir = tmp_path / "sweeps"
    shutil.copytree(state.path, copy_dir / "promo", symlinks=True)
    copied = load_state("promo", state_dir=copy_dir)
    copied.directory = str(copy_dir / "promo")
    copied.base_model_digest = "0" * 64
    copied.save()
    args = ["promote", "promo", "--state-dir", str(copy_dir), "--model-name", "nope"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has sha256" in err and "but the adapter was trained on 000000000000..." in err
    copied.base_model = str(tmp_path / "gone")
    copied.save()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: promo/") and "its base model cannot be resolved" in err


def test_force_needs_a_reason_and_promote_needs_a_sweep_trial(
    promo: FinishedSweep, capsys: pytest.CaptureFixture[str]
) -> None:
    state = promo.state
    first = trials(state)[0]
    assert promote(promo, f"promo/{first}", "x", "--force", "  ") == 2
    assert "--force needs a reason" in capsys.readouterr().err
    adapter = state.trials[first].adapter_path or ""
    assert promote(promo, adapter, "x") == 2
    assert "promote takes a sweep's trial" in capsys.readouterr().err
