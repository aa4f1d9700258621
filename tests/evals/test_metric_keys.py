"""Metric names: each is built and parsed back in evals/metric_keys.py alone."""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evals import metric_keys as keys
from evals.metric_keys import BenchKey, LoggedDelta

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("phase", "task", "stat"),
    itertools.product(keys.PHASES, ["mmlu", "arc_challenge", "mmlu_abstract_algebra"],
                      ["acc", "acc_norm_stderr", keys.DELTA, keys.DELTA_CI_LOW, keys.SECONDS]),
)  # fmt: skip
def test_a_bench_key_round_trips(phase: str, task: str, stat: str) -> None:
    key = BenchKey(phase, task, stat)
    assert key.name == f"bench/{phase}/{task}/{stat}"
    assert BenchKey.parse(key.name) == key
    assert keys.bench_name(phase, task, stat) == key.name


@pytest.mark.parametrize("name", [
    "bench/proxy/seconds",  # the phase's seconds, not a task's
    "base/bench/full/mmlu/acc",  # the base model's, on the parent run
    "best/bench/full/mmlu/acc",
    "bench/holdout/mmlu/acc",  # no such phase
    "bench/full/mmlu/acc/extra",
    "bench/full//acc", "bench/full/mmlu/", "bench//mmlu/acc",
    "heldout/loss", "objective/composite", "tokens_trained", "", "bench",
])  # fmt: skip
def test_foreign_names_are_not_bench_keys(name: str) -> None:
    assert BenchKey.parse(name) is None


@pytest.mark.parametrize(
    ("phase", "task", "stat"),
    [("test", "mmlu", "acc"), ("full", "", "acc"), ("full", "a/b", "acc"), ("full", "mmlu", "")],
)
def test_a_bench_key_that_could_not_be_read_back_is_refused(
    phase: str, task: str, stat: str
) -> None:
    with pytest.raises(ValueError, match="benchmark"):
        BenchKey(phase, task, stat)


def test_bench_metrics_and_task_stats_are_inverse() -> None:
    scores = {"mmlu": {"acc": 0.41, "acc_stderr": 0.01}, "arc_challenge": {"acc_norm": 0.3}}
    logged = keys.bench_metrics(keys.FULL, scores)
    assert logged == {"bench/full/mmlu/acc": 0.41, "bench/full/mmlu/acc_stderr": 0.01,
                      "bench/full/arc_challenge/acc_norm": 0.3}  # fmt: skip
    others = {keys.phase_seconds(keys.FULL): 9.0, "bench/proxy/mmlu/acc": 0.2,
              "base/bench/full/mmlu/acc": 0.5, "bench/full/mmlu_anatomy/acc": 0.9}  # fmt: skip
    every = {**logged, **others}
    for task, stats in scores.items():
        assert keys.task_stats(every, phase=keys.FULL, task=task) == stats
    assert keys.task_stats(every, phase=keys.PROXY, task="mmlu") == {"acc": 0.2}
    assert keys.phase_seconds(keys.PROXY) == "bench/proxy/seconds"
    with pytest.raises(ValueError):
        keys.phase_seconds("holdout")


def test_a_logged_delta_is_read_with_its_paired_test() -> None:
    metrics = {"bench/proxy/mmlu/delta": -0.1, "bench/proxy/mmlu/delta_ci_low": -0.2,
               "bench/proxy/mmlu/delta_ci_high": 0.01, "bench/proxy/arc/delta": 0.05,
               "bench/proxy/hellaswag/delta_p_value": 0.2}  # fmt: skip
    mmlu = LoggedDelta.read(metrics, phase=keys.PROXY, task="mmlu")
    assert mmlu == LoggedDelta(keys.PROXY, "mmlu", -0.1, ci_low=-0.2, ci_high=0.01)
    assert mmlu.tested
    arc = LoggedDelta.read(metrics, phase=keys.PROXY, task="arc")
    assert arc is not None and not arc.tested
    assert LoggedDelta.read(metrics, phase=keys.FULL, task="mmlu") is None
    assert LoggedDelta.read(metrics, phase=keys.PROXY, task="hellaswag") is None  # no delta


def test_heldout_names() -> None:
    assert keys.heldout("field_f1") == "heldout/field_f1"
    assert keys.heldout_metric("heldout/field_f1") == "field_f1"
    for other in ("train/loss", "base/heldout/loss", "heldout", "heldout/", "tokens_trained"):
        assert keys.heldout_metric(other) is None
    assert keys.short_name("heldout/field_f1") == "field_f1"
    assert keys.short_name("train/loss") == "train_loss"
    assert keys.short_name(keys.COMPOSITE) == "objective_composite"
    assert keys.second_metric(keys.HELDOUT_LOSS) == keys.TRAIN_LOSS
    assert keys.second_metric("heldout/field_f1") == keys.HELDOUT_LOSS
    assert keys.LOWER_IS_BETTER == ("heldout/loss", "heldout/perplexity")
    with pytest.raises(ValueError):
        keys.heldout("a/b")


def test_the_parent_runs_prefixes_round_trip() -> None:
    trial = {"heldout/loss": 1.2, "bench/full/mmlu/acc": 0.4, "cost/device_seconds": 60.0}
    based = keys.with_group(keys.BASE, trial)
    assert based == {"base/heldout/loss": 1.2, "base/bench/full/mmlu/acc": 0.4,
                     "base/cost/device_seconds": 60.0}  # fmt: skip
    parent = {**based, **keys.with_group(keys.BEST, {"heldout/loss": 0.9}),
              keys.trials_count("completed"): 3.0, keys.COST_DEVICE_HOURS: 0.5}  # fmt: skip
    assert keys.under_group(keys.BASE, parent) == trial
    assert keys.under_group(keys.BEST, parent) == {"heldout/loss": 0.9}
    assert keys.under_group(keys.TRIALS, parent) == {"completed": 3.0}
    assert keys.trials_count("pruned") == "trials/pruned"


def test_composite_names_and_logged_names() -> None:
    assert keys.composite_name(keys.PROXY) == keys.COMPOSITE == "objective/composite"
    assert keys.composite_name(keys.FULL) == keys.COMPOSITE_FULL == "objective/composite_full"
    logged = ["heldout/loss", "train/loss", "data/dropped_examples", "bench/proxy/mmlu/acc",
              keys.COMPOSITE, "cost/wall_seconds", "tokens_trained", "epoch", "rung",
              "trial/first_step_at", "trial/startup_seconds"]  # fmt: skip
    assert all(keys.is_logged(name) for name in logged)
    for unlogged in ("step", "final_rung", "trial/pid", "trial/node_id", "node_ip", "done"):
        assert not keys.is_logged(unlogged), unlogged
    assert keys.group_of("tokens_trained") == "" and keys.group_of("heldout/loss") == "heldout"


def test_the_module_is_standard_library_only() -> None:
    """It is imported by ``sweep --help`` paths and by trials: nothing heavy, no torch."""
    tree = ast.parse((REPO / "evals" / "metric_keys.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}  # fmt: skip
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
    assert imported <= {"__future__", "collections", "dataclasses"}
    code = "import sys, evals.metric_keys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# the metric-name spellings other modules must not write by hand
HAND_MADE = re.compile(
    r"""["'](?:base|best|bench|trials)/|f["'](?:bench|base|best|trials|heldout)/"""
)
KEYS_USERS = ["evals/benchmark_plan.py", "evals/gate.py", "evals/objective.py",
              "sweeps/driver/benchmarking.py", "sweeps/ab/compare.py",
              "sweeps/ab/compare_assemble.py", "sweeps/driver/display.py",
              "sweeps/tracking/recorder.py", "sweeps/tracking/state.py"]  # fmt: skip


@pytest.mark.parametrize("path", KEYS_USERS)
def test_these_modules_spell_no_metric_name_by_hand(path: str) -> None:
    text = (REPO / path).read_text()
    assert not HAND_MADE.findall(text)
    assert '"heldout/' not in text and '"cost/' not in text and '"train/' not in text
