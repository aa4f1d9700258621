"""The promotion gate on constructed per-item scores, and guard verdicts read from metrics."""

from __future__ import annotations

from evals.gate import promotion_gate
from evals.objective import guard_violations

IDS = [f"row-{i:02d}" for i in range(20)]


def scores(values: list[float]) -> dict[str, float]:
    return dict(zip(IDS, values, strict=False))


def test_a_significant_graded_gain_is_promoted() -> None:
    incumbent = scores([0.40 + 0.01 * i for i in range(20)])
    candidate = scores([0.55 + 0.01 * i + 0.02 * (i % 3) for i in range(20)])
    decision = promotion_gate(candidate, incumbent, metric="field_f1", against="the base model")
    assert decision.promote and decision.refusals == []
    assert decision.comparison.test == "bootstrap" and decision.comparison.ci_low > 0
    assert "delta +0.1690" in decision.evidence()  # 0.15 + 0.02 * mean(i % 3) = 0.169


def test_a_gain_that_could_be_chance_is_refused() -> None:
    incumbent = scores([0.0] * 20)
    candidate = scores([1.0, 1.0, 1.0] + [0.0] * 17)  # 3 discordant rows: McNemar p = 0.25
    decision = promotion_gate(candidate, incumbent, metric="exact_match", against="champion v2")
    assert not decision.promote
    assert decision.refusals == [
        "not significantly better than champion v2 on held-out exact_match"
    ]
    assert decision.comparison.p_value == 0.25


def test_a_worse_candidate_is_refused_even_when_the_difference_is_significant() -> None:
    decision = promotion_gate(scores([0.0] * 20), scores([1.0] * 20), metric="exact_match",
                              against="the base model")  # fmt: skip
    assert not decision.promote and decision.comparison.delta == -1.0


def test_a_guard_regression_refuses_a_significant_gain() -> None:
    guard = ["mmlu: -0.0500 vs base on the full set (drop 0.0500 > margin 0.0200)"]
    decision = promotion_gate(scores([1.0] * 20), scores([0.0] * 20), metric="exact_match",
                              against="the base model", guard=guard)  # fmt: skip
    assert not decision.promote
    assert decision.refusals == [f"guard benchmark regressed: {guard[0]}"]


def test_force_promotes_and_keeps_what_it_overrode() -> None:
    decision = promotion_gate(scores([0.0] * 20), scores([0.0] * 20), metric="exact_match",
                              against="the base model", force_reason="hotfix for a demo")  # fmt: skip
    assert decision.promote and decision.forced_reason == "hotfix for a demo"
    assert decision.refusals == [
        "not significantly better than the base model on held-out exact_match"
    ]


def test_guard_verdicts_prefer_full_sets_and_need_significance_on_the_proxy() -> None:
    margins = {"mmlu": 0.02, "arc_challenge": 0.02, "hellaswag": 0.02, "truthfulqa_mc2": 0.05}
    metrics = {
        "bench/proxy/mmlu/delta": 0.0, "bench/full/mmlu/delta": -0.04,  # full set decides
        "bench/proxy/arc_challenge/delta": -0.125, "bench/proxy/arc_challenge/delta_p_value": 1.0,
        "bench/proxy/hellaswag/delta": -0.25, "bench/proxy/hellaswag/delta_p_value": 0.01,
        "bench/proxy/truthfulqa_mc2/delta": -0.04,  # within its margin
    }  # fmt: skip
    assert guard_violations(metrics, margins) == [
        "mmlu: -0.0400 vs base on the full set (drop 0.0400 > margin 0.0200)",
        "hellaswag: -0.2500 vs base on the proxy set (drop 0.2500 > margin 0.0200)",
    ]
    untested = {"bench/proxy/mmlu/delta": -0.1}  # no paired test logged: the drop counts
    assert guard_violations(untested, {"mmlu": 0.02}) == [
        "mmlu: -0.1000 vs base on the proxy set (drop 0.1000 > margin 0.0200)"
    ]
    interval = {"bench/proxy/mmlu/delta": -0.1, "bench/proxy/mmlu/delta_ci_low": -0.3,
                "bench/proxy/mmlu/delta_ci_high": 0.05}  # fmt: skip
    # a bootstrap interval that spans zero: the loss could be chance
    assert guard_violations(interval, {"mmlu": 0.02}) == []
    full_untested = {"bench/full/mmlu/delta": -0.03, "bench/full/mmlu/delta_p_value": 0.9}
    assert guard_violations(full_untested, {"mmlu": 0.02}) == [  # full sets: no test
        "mmlu: -0.0300 vs base on the full set (drop 0.0300 > margin 0.0200)"
    ]
