"""Benchmark plans: per-document scores against the base, and the paired test on them."""

from __future__ import annotations

import pytest

from evals.benchmark_plan import (
    PROXY,
    BenchmarkPlan,
    base_with,
    item_scores,
    phase_metrics,
)
from evals.benchmark_scores import BenchmarkScores
from evals.objective import guard_violations


def plan() -> BenchmarkPlan:
    return BenchmarkPlan(
        tasks=["arc_challenge", "mmlu"], mirror=None, cache="/nonexistent", num_fewshot=0,
        batch_size=4, proxy={}, digests={}, metric_overrides={}, weights={}, guard={},
        finalists=0,
    )  # fmt: skip


def scores(arc: list[float], mmlu: dict[str, list[float]]) -> BenchmarkScores:
    """ARC's acc_norm per document, and MMLU's acc per document of each subject."""
    samples = {"arc_challenge": [{"doc_id": i, "acc_norm": v} for i, v in enumerate(arc)]}
    samples |= {
        leaf: [{"doc_id": i, "acc": v} for i, v in enumerate(vs)] for leaf, vs in mmlu.items()
    }
    every = [v for vs in mmlu.values() for v in vs]
    return BenchmarkScores(
        metrics={"arc_challenge": {"acc_norm": sum(arc) / len(arc)},
                 "mmlu": {"acc": sum(every) / len(every)}},
        samples=samples, groups={"mmlu": list(mmlu)},
    )  # fmt: skip


def test_items_are_keyed_by_leaf_and_document() -> None:
    base = scores([1, 0, 1], {"mmlu_anatomy": [1, 1], "mmlu_virology": [0]})
    assert item_scores(base, plan(), "mmlu") == {
        "mmlu_anatomy/0": 1.0, "mmlu_anatomy/1": 1.0, "mmlu_virology/0": 0.0,
    }  # fmt: skip
    assert item_scores(base, plan(), "arc_challenge") == {
        "arc_challenge/0": 1.0, "arc_challenge/1": 0.0, "arc_challenge/2": 1.0,
    }  # fmt: skip


def test_proxy_deltas_come_with_a_paired_test_against_the_base() -> None:
    """ARC: 8 of 10 answers lost (a real loss); MMLU: one of three (could be chance)."""
    base = scores([1.0] * 10, {"mmlu_anatomy": [1, 1], "mmlu_virology": [1]})
    with_base = base_with(plan(), base, phase=PROXY)
    trial = scores([0.0] * 8 + [1.0] * 2, {"mmlu_anatomy": [1, 0], "mmlu_virology": [1]})
    metrics = phase_metrics(trial, with_base, phase=PROXY, heldout=None, seconds=1.0)
    assert metrics["bench/proxy/arc_challenge/delta"] == pytest.approx(-0.8)
    assert metrics["bench/proxy/arc_challenge/delta_p_value"] == pytest.approx(2 * 0.5**8)
    assert metrics["bench/proxy/arc_challenge/delta_ci_high"] < 0
    assert metrics["bench/proxy/mmlu/delta_p_value"] == pytest.approx(1.0)
    assert metrics["bench/proxy/mmlu/delta"] == pytest.approx(-1 / 3)  # beyond any margin here
    # the guard reads them back: ARC's loss is real, MMLU's could be chance
    assert guard_violations(metrics, {"arc_challenge": 0.1, "mmlu": 0.1}) == [
        "arc_challenge: -0.8000 vs base on 10 documents (proxy) (drop 0.8000 > margin 0.1000)"
    ]
    # what the documents could show is logged beside each delta: 10 documents of 0/1 scores
    # detect a drop of about 70 points; 3 documents, none (so nothing is logged)
    assert metrics["bench/proxy/arc_challenge/documents"] == 10
    assert 0.5 < metrics["bench/proxy/arc_challenge/detectable_drop"] < 0.95
    assert metrics["bench/proxy/mmlu/documents"] == 3
    assert "bench/proxy/mmlu/detectable_drop" not in metrics


def test_a_guarded_task_is_screened_on_enough_documents_to_catch_a_collapse() -> None:
    """The guard decides on documents that can show a 15-point drop (not the 8 a proxy had);
    what is named in proxy_sizes wins; unguarded tasks keep proxy_size."""
    from evals.benchmark_plan import screening_sizes
    from evals.power import BINARY, PLANNING_CHURN, detectable_drop
    from sweeps.config import BenchmarksConfig

    config = BenchmarksConfig(tasks=["hellaswag", "mmlu", "arc_challenge"], proxy_size=8,
                              proxy_sizes={"mmlu": 20})  # fmt: skip
    sizes = screening_sizes(config, config.tasks, guarded=["hellaswag", "mmlu"])
    assert sizes["mmlu"] == 20 and sizes["arc_challenge"] == 8
    assert detectable_drop(sizes["hellaswag"], kind=BINARY, spread=PLANNING_CHURN) <= 0.15
    # at the alpha of each of the two screening looks too
    assert detectable_drop(sizes["hellaswag"], kind=BINARY, spread=PLANNING_CHURN,
                           alpha=0.025) <= 0.15  # fmt: skip
    assert detectable_drop(8, kind=BINARY, spread=PLANNING_CHURN) == float("inf")
    assert 60 < sizes["hellaswag"] < 200
