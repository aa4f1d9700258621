"""Composite objective, guard, primary metrics and proxy subsets: pure functions."""

from __future__ import annotations

import pytest

from evals.benchmarks import BenchmarkScores, fill_group_stderr, proxy_samples
from evals.objective import composite, deltas, guard_violations, primary_metric


def test_composite_adds_weighted_deltas_and_subtracts_them_when_minimising() -> None:
    d = deltas({"arc": 0.30, "mmlu": 0.50}, {"arc": 0.25, "mmlu": 0.55})
    assert d == pytest.approx({"arc": 0.05, "mmlu": -0.05})
    weights = {"arc": 1.0, "mmlu": 2.0}
    assert composite(0.8, task_deltas=d, weights=weights, mode="max") == pytest.approx(0.75)
    assert composite(1.2, task_deltas=d, weights=weights, mode="min") == pytest.approx(1.25)


def test_guard_flags_only_drops_beyond_the_margin() -> None:
    base = {"mmlu": 0.40, "arc": 0.30}
    assert guard_violations({"mmlu": 0.385, "arc": 0.1}, base, {"mmlu": 0.02}) == []
    [line] = guard_violations({"mmlu": 0.37}, base, {"mmlu": 0.02, "arc": 0.0})
    assert line.startswith("mmlu: 0.3700 vs base 0.4000 (drop 0.0300")


def test_primary_metric_prefers_config_then_known_tasks_then_fallbacks() -> None:
    assert primary_metric("arc_challenge", {}, {}) == "acc_norm"
    assert primary_metric("arc_challenge", {}, {"arc_challenge": "acc"}) == "acc"
    assert primary_metric("my_task", {"exact_match": 1.0, "f1": 0.5}, {}) == "exact_match"
    with pytest.raises(ValueError, match=r"name one in benchmarks\.metrics"):
        primary_metric("my_task", {"bleu": 3.0}, {})


def test_proxy_subset_is_seeded_and_stratified_by_subtask() -> None:
    leaves = {"big": 100, "mid": 50, "small": 10, "tiny": 1}
    picked = proxy_samples(leaves, size=32, seed=7)
    assert picked == proxy_samples(leaves, size=32, seed=7)  # fixed for a seed
    assert picked != proxy_samples(leaves, size=32, seed=8)
    counts = {k: len(v) for k, v in picked.items()}
    assert sum(counts.values()) == 32 and counts["tiny"] == 1 and counts["big"] > counts["mid"]
    assert all(0 <= i < leaves[k] and v == sorted(set(v)) for k, v in picked.items() for i in v)
    # a group smaller than its subtasks still gets one document per subtask
    assert {k: len(v) for k, v in proxy_samples(leaves, size=2, seed=0).items()} == dict.fromkeys(
        leaves, 1
    )
    assert len(proxy_samples({"arc": 5}, size=50, seed=0)["arc"]) == 5


def test_group_stderr_is_filled_from_samples_when_lm_eval_gives_none() -> None:
    scores = BenchmarkScores(
        metrics={"g": {"acc": 0.5}, "a": {"acc": 1.0}, "b": {"acc": 0.0}},
        samples={"a": [{"acc": 1.0}], "b": [{"acc": 0.0}]},
        groups={"g": ["a", "b"]},
    )
    fill_group_stderr(scores)
    assert scores.metrics["g"]["acc_stderr"] == pytest.approx(0.5)  # stdev 0.707 / sqrt(2)
