"""A real sweep with lm-eval benchmarks on: proxy scores per trial, full sets for the finalists.

The benchmarks are fixture tasks in the Hugging Face schema (ARC-Challenge and two MMLU subjects)
served from a local mirror this test writes; HellaSwag is listed as optional and has no data, so
it must be skipped visibly. Ray Tune, Optuna, MLflow and lm-eval are all real.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from sweeps import launch_sweep
from sweeps.cli.main import main
from sweeps.tracking.state import SweepState
from tests.conftest import nothing_reached_mlflow, slice_embedded_data, tiny_sweep_config
from tests.evals.test_benchmarks import ARC_ROWS, write_rows

NUM_TRIALS = 3
FINALISTS = 2
MMLU_PROXY = 8


def mmlu_rows() -> list[dict[str, Any]]:
    """One to three questions for each of lm-eval's 57 MMLU subjects (the group needs them all)."""
    import lm_eval.tasks

    default = Path(lm_eval.tasks.__file__).parent / "mmlu" / "default"
    subjects = sorted(p.stem.removeprefix("mmlu_") for p in default.glob("mmlu_*.yaml"))
    return [{"question": f"{subject} Q{i}", "subject": subject, "choices": ["w", "x", "y", "z"],
             "answer": i % 4} for n, subject in enumerate(subjects) for i in range(1 + n % 3)]  # fmt: skip


def mmlu_categories() -> dict[str, str]:
    """lm-eval's own subject -> category (``mmlu_stem_tasks`` ...), from its subject YAMLs."""
    import lm_eval.tasks
    import yaml

    default = Path(lm_eval.tasks.__file__).parent / "mmlu" / "default"
    return {
        path.stem: yaml.safe_load(path.read_text())["tag"] for path in default.glob("mmlu_*.yaml")
    }


def fixture_mirror(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_rows(root / "arc_challenge_test.jsonl", ARC_ROWS)
    rows = mmlu_rows()
    write_rows(root / "mmlu_test.jsonl", rows)
    write_rows(root / "mmlu_dev.jsonl", rows)
    return root


def benchmark_config(model: Path, tmp: Path, **benchmarks: Any) -> dict[str, Any]:
    data = slice_embedded_data(tmp, train=24, heldout=6)
    return tiny_sweep_config(
        model, data, tmp,
        search_space={"num_epochs": 1},
        search={"num_samples": NUM_TRIALS, "max_concurrent": 2},
        scheduler={"type": "none"},
        benchmarks={"tasks": ["arc_challenge", "mmlu", "hellaswag"], "optional": True,
                    "mirror": str(fixture_mirror(tmp / "mirror")), "num_fewshot": 0,
                    "batch_size": 4, "proxy_size": 3, "proxy_sizes": {"mmlu": MMLU_PROXY},
                    "finalists": FINALISTS, **benchmarks},
        objective={"metric": "heldout/loss", "benchmark_weights": {"arc_challenge": 0.5, "mmlu": 0.5},
                   "guard": {"mmlu": 1.0}},
    )  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench-sweep")
    config = benchmark_config(tiny_model, tmp)
    console_text = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse cache fixture is later
        patch.setenv("LORA_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        state = launch_sweep(config, name="bench", console=Console(file=console_text, width=200))
    client = MlflowClient(tracking_uri=config["tracking"]["mlflow_uri"])
    return {"state": state, "client": client, "console": console_text.getvalue(), "tmp": tmp}


def metrics_of(client: MlflowClient, run_id: str) -> dict[str, float]:
    return dict(client.get_run(run_id).data.metrics)


def test_every_completed_trial_has_proxy_scores_with_stderr_and_samples(
    sweep: dict[str, Any],
) -> None:
    state: SweepState = sweep["state"]
    client: MlflowClient = sweep["client"]
    plan = json.loads(
        Path(client.download_artifacts(state.parent_run_id, "benchmarks_plan.json")).read_text()
    )
    assert plan["tasks"] == ["arc_challenge", "mmlu"]
    # MMLU is stratified by subject (8 documents: 8 subjects, every category among them); the
    # proxy is 3 of the 6 ARC questions
    mmlu = plan["proxy_documents"]["mmlu"]
    assert len(mmlu) == MMLU_PROXY and all(len(ids) == 1 for ids in mmlu.values())
    assert {mmlu_categories()[s] for s in mmlu} == set(mmlu_categories().values())
    assert len(plan["proxy_documents"]["arc_challenge"]["arc_challenge"]) == 3
    assert plan["task_dirs"] and len(plan["task_dirs"]) <= 3  # trials index only what they need
    completed = [t for t in state.trials.values() if t.status == "completed"]
    assert len(completed) == NUM_TRIALS
    for record in completed:
        metrics = metrics_of(client, record.run_id)
        for key in ("bench/proxy/arc_challenge/acc_norm", "bench/proxy/arc_challenge/acc_stderr",
                    "bench/proxy/mmlu/acc", "bench/proxy/mmlu/acc_stderr",
                    "bench/proxy/arc_challenge/delta", "bench/proxy/seconds",
                    "bench/proxy/arc_challenge/delta_p_value", "bench/proxy/mmlu/delta_ci_high",
                    "bench/proxy/mmlu/seconds",
                    "objective/composite"):  # fmt: skip
            assert key in metrics, (record.trial_id, key)
        # the proxy's MMLU is the mean over its documents; no per-subject or category noise
        assert not any(
            k.startswith(("bench/proxy/mmlu_", "bench/proxy/mmlu_stem/")) for k in metrics
        )
        # MMLU is guarded (margin 1.0), so it is screened in two looks; the first, 4 of its 8
        # documents, already clears the margin, and the screening stops there
        scored = [a.path.removeprefix("benchmarks/proxy/").removesuffix(".jsonl")
                  for a in client.list_artifacts(record.run_id, "benchmarks/proxy")
                  if a.path.removeprefix("benchmarks/proxy/").startswith("mmlu_")]  # fmt: skip
        assert len(scored) == MMLU_PROXY // 2 and set(scored) <= set(mmlu)
        assert metrics["bench/proxy/mmlu/documents"] == MMLU_PROXY // 2
        pooled = []
        for subject in scored:
            rows = client.download_artifacts(record.run_id, f"benchmarks/proxy/{subject}.jsonl")
            pooled += [json.loads(x)["acc"] for x in Path(rows).read_text().splitlines()]
        assert len(pooled) == MMLU_PROXY // 2
        assert metrics["bench/proxy/mmlu/acc"] == pytest.approx(sum(pooled) / len(pooled))
        samples = client.download_artifacts(record.run_id, "benchmarks/proxy/arc_challenge.jsonl")
        doc_ids = sorted(json.loads(x)["doc_id"] for x in Path(samples).read_text().splitlines())
        assert doc_ids == plan["proxy_documents"]["arc_challenge"]["arc_challenge"]
        # every delta with the documents it rests on; 3 ARC documents can detect nothing
        assert metrics["bench/proxy/arc_challenge/documents"] == 3
        assert "bench/proxy/arc_challenge/detectable_drop" not in metrics
        config = client.download_artifacts(record.run_id, "benchmarks/proxy/eval_config.json")
        assert json.loads(Path(config).read_text())["phase"] == "proxy"


def test_composite_objective_is_heldout_plus_weighted_deltas(sweep: dict[str, Any]) -> None:
    state: SweepState = sweep["state"]
    assert state.objective_metric == "objective/composite" and state.objective_mode == "min"
    for record in state.trials.values():
        m = record.metrics
        bonus = 0.5 * m["bench/proxy/arc_challenge/delta"] + 0.5 * m["bench/proxy/mmlu/delta"]
        assert m["objective/composite"] == pytest.approx(m["heldout/loss"] - bonus)
        assert m["bench/proxy/mmlu/delta"] == pytest.approx(
            m["bench/proxy/mmlu/acc"] - sweep["client"].get_run(state.parent_run_id)
            .data.metrics["base/bench/proxy/mmlu/acc"]
        )  # fmt: skip


def test_finalists_get_full_sets_and_best_is_a_finalist(sweep: dict[str, Any]) -> None:
    state: SweepState = sweep["state"]
    client: MlflowClient = sweep["client"]
    ranked = state.ranked_trials()
    by_proxy = sorted(state.trials.values(), key=lambda t: t.metrics["objective/composite"])
    finalists = [t for t in state.trials.values() if t.finalist]
    assert {t.trial_id for t in finalists} == {t.trial_id for t in by_proxy[:FINALISTS]}
    for record in state.trials.values():
        metrics = metrics_of(client, record.run_id)
        tags = client.get_run(record.run_id).data.tags
        assert tags["finalist"] == str(record.finalist).lower() and tags["guard"] == "passed"
        if record.finalist:
            assert metrics["bench/full/arc_challenge/acc_norm"] >= 0
            assert "bench/full/mmlu/acc" in metrics and "objective/composite_full" in metrics
            assert "bench/full/arc_challenge/delta_p_value" in metrics  # paired vs the base
            rows = client.download_artifacts(record.run_id, "benchmarks/full/arc_challenge.jsonl")
            assert len(Path(rows).read_text().splitlines()) == len(ARC_ROWS)  # the full set
        else:
            assert not any(k.startswith("bench/full/") for k in metrics)
    best = state.best_trial()
    assert best is not None and best.finalist
    assert best.final_objective == min(t.metrics["objective/composite_full"] for t in finalists)
    assert ranked[0].final_objective is not None or not ranked[0].finalist
    parent = client.get_run(state.parent_run_id).data
    assert {"base/bench/full/arc_challenge/acc_norm", "base/bench/proxy/mmlu/acc"} <= set(
        parent.metrics
    )
    assert parent.tags["best_trial"] == best.trial_id
    for record in finalists:
        assert f"Finalist {record.trial_id} (finalist tier): arc_challenge " in sweep["console"]
        # scored in looks: the guard's margin on MMLU (1.0) is settled by the first 100 of its
        # 114 documents, and ARC's 6 are one look (the tiny model's base sits at chance there)
        assert (f"Finalist {record.trial_id} documents: arc_challenge: 6 documents in 1 look(s), "
                "at chance; mmlu: 100 documents in 1 look(s), cleared") in sweep["console"]  # fmt: skip
        assert metrics_of(client, record.run_id)["bench/full/mmlu/documents"] == 100


def test_optional_benchmark_without_data_is_skipped_visibly(sweep: dict[str, Any]) -> None:
    state: SweepState = sweep["state"]
    tags = sweep["client"].get_run(state.parent_run_id).data.tags
    assert tags["benchmarks.tasks"] == "arc_challenge,mmlu"
    assert tags["benchmarks.skipped"].startswith("hellaswag: the Hugging Face Hub is offline")
    console = sweep["console"]
    assert "Benchmark skipped (optional): hellaswag" in console
    assert "LORA_SWEEP_BENCHMARK_MIRROR" in console


def test_base_scores_are_cached_across_sweeps(
    sweep: dict[str, Any], tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A later sweep with the same model, tasks and documents reads the base scores back."""
    from evals.benchmark_plan import cached_base_scores, plan_benchmarks
    from sweeps.config import config_from_dict
    from trainers.models import model_identity

    config = config_from_dict(benchmark_config(tiny_model, tmp_path_factory.mktemp("again")))
    said: list[str] = []
    cache = tmp_path_factory.getbasetemp() / "cache"
    mirror = Path(config.benchmarks.mirror or "")
    plan = plan_benchmarks(config.benchmarks, config.objective, mirror=mirror, cache=cache,
                           progress=said.append)  # fmt: skip
    assert plan is not None

    def load() -> tuple[Any, Any]:
        raise AssertionError("the base model was loaded although its scores are cached")

    for phase in ("proxy", "full"):
        scores = cached_base_scores(plan, phase=phase, model_id=model_identity(tiny_model),
                                    load=load, progress=said.append)  # fmt: skip
        parent = sweep["client"].get_run(sweep["state"].parent_run_id).data.metrics
        assert scores.metrics["mmlu"]["acc"] == parent[f"base/bench/{phase}/mmlu/acc"]
    assert said[-1] == "Base model benchmark scores (full): cached."


def test_required_benchmark_without_data_fails_before_training(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    config = benchmark_config(tiny_model, tmp_path, optional=False)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path}: benchmarks: benchmark data cannot be had: hellaswag" in err
    assert "benchmarks.optional: true" in err and "LORA_SWEEP_BENCHMARK_MIRROR" in err
    assert not (tmp_path / "sweeps").exists() and nothing_reached_mlflow(tmp_path)


def full_scores(client: MlflowClient, run_id: str, artifact: str, metric: str) -> dict[str, float]:
    """``{leaf/doc id: score}`` from one per-sample artefact file."""
    path = Path(client.download_artifacts(run_id, artifact))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {f"{path.stem}/{row['doc_id']}": float(row[metric]) for row in rows}


def test_compare_pairs_benchmarks_on_the_same_documents(
    sweep: dict[str, Any], tmp_path: Path
) -> None:
    from evals.paired import compare_paired

    state: SweepState = sweep["state"]
    client: MlflowClient = sweep["client"]
    first, second = sorted(t.trial_id for t in state.trials.values() if t.finalist)
    where = ["--state-dir", str(state.path.parent), "--mlflow-uri", state.mlflow_uri]
    out = tmp_path / "two-finalists"
    assert main(["compare", f"bench/{first}", f"bench/{second}", "--out", str(out), *where]) == 0
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["benchmarks"]}
    assert set(rows) == {"arc_challenge (acc_norm, full)", "mmlu (acc, full)"}
    arc = rows["arc_challenge (acc_norm, full)"]
    docs = {t: full_scores(client, state.trials[t].run_id, "benchmarks/full/arc_challenge.jsonl",
                           "acc_norm") for t in (first, second)}  # fmt: skip
    expected = compare_paired(docs[first], docs[second], resamples=2000)  # first - second
    assert (arc["ci_low"], arc["ci_high"]) == (expected.ci_low, expected.ci_high)
    assert arc["test"].endswith(f", {len(ARC_ROWS)} documents")
    out = tmp_path / "finalist-vs-base"
    assert main(["compare", f"bench/{first}", "base", "--out", str(out), *where]) == 0
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["benchmarks"]}
    mmlu = rows["mmlu (acc, full)"]  # pooled over every subject's documents, against the base's
    assert mmlu["test"].endswith(", 100 documents") and mmlu["ci_low"] is not None  # the looks
    # what the documents could show: ARC's 6 questions, nothing; MMLU's 100, a large drop only.
    # The headline never says a bare "no benchmark regression".
    assert rows["arc_challenge (acc_norm, full)"]["detectable"] is None
    assert mmlu["documents"] == 100 and 0.1 < mmlu["detectable"] < 0.6
    headline = json.loads((out / "report.json").read_text())["headline"]
    assert "no benchmark regression (" not in headline and not headline.endswith("regression")
    if "benchmark regression on" not in headline:  # the tiny model: no regression seen
        assert "no benchmark regression larger than " in headline
        assert "arc_challenge: too few documents (6)" in headline
        assert "arc_challenge, mmlu at chance for B" in headline  # the tiny model guesses
    markdown = (out / "report.md").read_text()
    assert "too few documents to detect a regression (6 documents)" in markdown
    assert mmlu["delta"] == pytest.approx(
        state.trials[first].metrics["bench/full/mmlu/acc"]
        - metrics_of(client, state.parent_run_id)["base/bench/full/mmlu/acc"]
    )


def test_validate_times_the_proxy_benchmarks_into_its_estimate(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial that completes scores the proxy benchmarks: the dry run times them on the real
    model and the estimate counts them for every completed trial."""
    from dataclasses import replace

    import yaml

    from evals.sequential import finalist_looks
    from sweeps.cli.dry_run import dry_run
    from sweeps.driver.estimate import DRIVER_DOCUMENT_SHARE, DriverDocuments, estimate_sweep

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(benchmark_config(tiny_model, tmp_path)))
    monkeypatch.setenv("LORA_SWEEP_CACHE", str(tmp_path / "cache"))  # no base scores cached
    said: list[str] = []
    done = dry_run(path, say=said.append)
    assert done.timing.benchmark > 0
    assert any("s of proxy benchmarks at a trial's end" in line for line in said)
    without = estimate_sweep(done.plan.config, replace(done.timing, benchmark=0.0),
                             num_samples=NUM_TRIALS, cpus=2,
                             token_lengths=list(done.plan.train_token_lengths))  # fmt: skip
    assert done.estimate.device_hours > without.device_hours
    # after the trials: each finalist's documents, and the base's screening and finalist ones
    # (nothing cached yet); at the seconds per document the timed trial's screening took
    bench = done.plan.spec.benchmarks
    screening = sum(len(ids) for task in bench.tasks for ids in bench.proxy[task].values())
    assert done.timing.benchmark_documents == screening
    full = sum(bench.set_sizes.values())
    assert sorted(bench.set_sizes) == sorted(bench.tasks) and min(bench.set_sizes.values()) > 0
    first = sum(finalist_looks(size).sizes[0] for size in bench.set_sizes.values())
    documents = done.estimate.driver_documents
    assert documents == DriverDocuments(least=FINALISTS * first + screening + full,
                                        most=FINALISTS * full + screening + full)  # fmt: skip
    assert done.estimate.driver_seconds == pytest.approx(
        documents.most * DRIVER_DOCUMENT_SHARE * done.timing.benchmark / screening
    )
    count = f"{documents.least:,} to {documents.most:,}" if first < full else f"{documents.most:,}"
    assert any(f"{count} documents" in line for line in done.estimate.lines())
