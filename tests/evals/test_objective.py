"""Composite objective, guard, primary metrics and proxy subsets: pure functions."""

from __future__ import annotations

import itertools
import math

import pytest

from evals.benchmark_scores import BenchmarkScores, fill_group_stderr, pool_group, proxy_samples
from evals.objective import (
    CLEARED,
    REGRESSED,
    UNRESOLVED,
    chance_note,
    composite,
    deltas,
    guard_checks,
    guard_violations,
    primary_metric,
)


def test_composite_adds_weighted_deltas_and_subtracts_them_when_minimising() -> None:
    d = deltas({"arc": 0.30, "mmlu": 0.50}, {"arc": 0.25, "mmlu": 0.55})
    assert d == pytest.approx({"arc": 0.05, "mmlu": -0.05})
    weights = {"arc": 1.0, "mmlu": 2.0}
    assert composite(0.8, task_deltas=d, weights=weights, mode="max") == pytest.approx(0.75)
    assert composite(1.2, task_deltas=d, weights=weights, mode="min") == pytest.approx(1.25)


def test_guard_flags_only_drops_beyond_the_margin() -> None:
    within = {"bench/proxy/mmlu/delta": -0.015, "bench/proxy/arc/delta": -0.2}  # arc: unguarded
    assert guard_violations(within, {"mmlu": 0.02}) == []
    beyond = {"bench/proxy/mmlu/delta": -0.03, "bench/proxy/arc/delta": 0.0}
    [line] = guard_violations(beyond, {"mmlu": 0.02, "arc": 0.0})
    assert line == "mmlu: -0.0300 vs base on the proxy set (drop 0.0300 > margin 0.0200)"
    assert guard_violations({"bench/proxy/mmlu/delta": -0.02}, {"mmlu": 0.02}) == []  # at it


def test_guard_judges_each_task_on_the_full_set_when_the_trial_has_it_else_the_proxy() -> None:
    """A finalist whose full sets lack a guarded task (not scored there) is still judged on
    that task's proxy; a task the full set scored is judged on the full set alone."""
    metrics = {
        "bench/proxy/mmlu/delta": -0.30, "bench/proxy/mmlu/delta_p_value": 0.001,
        "bench/full/mmlu/delta": 0.01,  # the full set clears it
        "bench/proxy/arc/delta": -0.30, "bench/proxy/arc/delta_p_value": 0.001,  # no full
    }  # fmt: skip
    assert guard_violations(metrics, {"mmlu": 0.02, "arc": 0.02}) == [
        "arc: -0.3000 vs base on the proxy set (drop 0.3000 > margin 0.0200)"
    ]
    assert guard_violations({"bench/full/mmlu/acc": 0.3}, {"mmlu": 0.02}) == []  # no delta


def test_the_guard_clears_a_task_only_where_its_documents_could_show_the_margin() -> None:
    """No loss on 8 documents is not a clean bill: the margin (5 points) is below what they can
    detect. The same delta on documents that detect 4 points clears it; so does an interval
    whose low end is above minus the margin. A significant loss beyond it is a regression."""
    margins = {"hellaswag": 0.05}
    few = {"bench/proxy/hellaswag/delta": 0.0, "bench/proxy/hellaswag/delta_p_value": 1.0,
           "bench/proxy/hellaswag/delta_ci_low": -0.25, "bench/proxy/hellaswag/documents": 8}  # fmt: skip
    [check] = guard_checks(few, margins)
    assert check.verdict == UNRESOLVED
    assert check.line == ("hellaswag: not cleared: +0.0000 vs base on 8 documents (proxy), but the "
                          "margin is 5.0 points and too few documents to detect a regression")  # fmt: skip
    screened = {**few, "bench/proxy/hellaswag/documents": 92,
                "bench/proxy/hellaswag/detectable_drop": 0.141}  # fmt: skip
    [check] = guard_checks(screened, margins)
    assert check.verdict == UNRESOLVED and "detect a drop of 14.1 points or more" in check.line
    finalist = {**screened, "bench/full/hellaswag/delta": -0.01,
                "bench/full/hellaswag/documents": 600,
                "bench/full/hellaswag/detectable_drop": 0.04}  # fmt: skip
    [check] = guard_checks(finalist, margins)
    assert check.verdict == CLEARED and "(full)" in check.line
    bounded = {**few, "bench/proxy/hellaswag/delta_ci_low": -0.03}
    assert [c.verdict for c in guard_checks(bounded, margins)] == [CLEARED]
    lost = {**screened, "bench/proxy/hellaswag/delta": -0.2,
            "bench/proxy/hellaswag/delta_p_value": 0.001}  # fmt: skip
    assert [c.verdict for c in guard_checks(lost, margins)] == [REGRESSED]
    assert [c.verdict for c in guard_checks({}, margins)] == [UNRESOLVED]  # never scored


def test_a_base_score_within_noise_of_chance_is_said() -> None:
    assert chance_note("arc_challenge", 0.2688, 0.013) is not None  # 0.25 + 1.96 x 0.013 > it
    assert chance_note("hellaswag", 0.40, 0.015) is None
    assert chance_note("my_task", 0.25, 0.01) is None  # chance unknown: nothing said


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
    assert sum(counts.values()) == 32
    for name, count in leaves.items():  # each subtask's proportional share, rounded down or up
        share = 32 * count / sum(leaves.values())
        assert math.floor(share) <= counts.get(name, 0) <= math.ceil(share), name
    assert all(0 <= i < leaves[k] and v == sorted(set(v)) for k, v in picked.items() for i in v)
    assert len(proxy_samples({"arc": 5}, size=50, seed=0)["arc"]) == 5


def test_proxy_smaller_than_its_group_spreads_over_the_groups_order() -> None:
    """16 documents of 57 equal subjects: 16 subjects, one each, evenly spaced in the group's
    order (which lists MMLU's subjects category by category)."""
    subjects = {f"s{i:02d}": 10 for i in range(57)}
    for seed in range(5):
        picked = proxy_samples(subjects, size=16, seed=seed)
        assert len(picked) == 16 and all(len(ids) == 1 for ids in picked.values())
        positions = sorted(int(name[1:]) for name in picked)
        assert {b - a for a, b in itertools.pairwise(positions)} <= {3, 4}  # 57 / 16 = 3.56


def test_group_stderr_is_filled_from_samples_when_lm_eval_gives_none() -> None:
    scores = BenchmarkScores(
        metrics={"g": {"acc": 0.5}, "a": {"acc": 1.0}, "b": {"acc": 0.0}},
        samples={"a": [{"acc": 1.0}], "b": [{"acc": 0.0}]},
        groups={"g": ["a", "b"]},
    )
    fill_group_stderr(scores)
    assert scores.metrics["g"]["acc_stderr"] == pytest.approx(0.5)  # stdev 0.707 / sqrt(2)


def test_a_groups_proxy_pools_its_subtasks_documents() -> None:
    """Three documents from two subjects: the group's score is the mean over the documents
    (size-weighted, as lm-eval weights MMLU), with a standard error over them."""
    scores = BenchmarkScores(
        metrics={"a": {"acc": 1.0, "acc_stderr": 0.0}, "b": {"acc": 0.5, "acc_stderr": 0.5}},
        samples={"a": [{"acc": 1.0}], "b": [{"acc": 1.0}, {"acc": 0.0}]},
    )
    pooled = pool_group(scores, "g")
    assert pooled.metrics["g"]["acc"] == pytest.approx(2 / 3)  # not the subjects' mean, 0.75
    assert pooled.metrics["g"]["acc_stderr"] == pytest.approx(0.57735 / 3**0.5, abs=1e-5)
    assert pooled.groups == {"g": ["a", "b"]} and pooled.members("g") == ["g", "a", "b"]
