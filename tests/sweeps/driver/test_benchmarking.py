"""The no-regression guard on a constructed regression, through the driver's real code path."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from evals.benchmark_plan import BenchmarkPlan
from evals.metric_keys import DELTA, DELTA_P_VALUE, PROXY, bench_name
from evals.objective import guard_violations
from sweeps.config import DataConfig
from sweeps.driver.benchmarking import guard_and_score_finalists
from sweeps.tracking.mlflow_facade import SweepTracker
from sweeps.tracking.state import SweepState, TrialRecord
from trainers.spec import TrialSpec

BASE_PROXY = {"arc_challenge": 0.30, "mmlu": 0.40}


def plan(**changes: object) -> BenchmarkPlan:
    fields: dict[str, object] = dict(
        tasks=["arc_challenge", "mmlu"], mirror=None, cache="/nonexistent", num_fewshot=0,
        batch_size=4, proxy={}, digests={}, metric_overrides={}, weights={}, finalists=0,
        guard={"mmlu": 0.02}, heldout_metric="heldout/field_f1", mode="max",
        base={PROXY: BASE_PROXY},
    )  # fmt: skip
    fields.update(changes)
    return BenchmarkPlan(**fields)  # type: ignore[arg-type]


def trial(
    tracker: SweepTracker, parent: str, trial_id: str, *, f1: float, mmlu: float,
    detectable: float | None = 0.015,
) -> TrialRecord:  # fmt: skip
    """A completed trial as its last rung logs it: scores, deltas against the base, and the drop
    the documents could detect (None: none)."""
    run_id = tracker.start_trial(parent, sweep="s", trial_id=trial_id, params={})
    scores = {"mmlu": mmlu, "arc_challenge": 0.3}
    metrics = {"heldout/field_f1": f1, "bench/proxy/mmlu/acc": mmlu,
               "bench/proxy/arc_challenge/acc_norm": 0.3, "bench/proxy/mmlu/documents": 900}  # fmt: skip
    metrics |= {bench_name(PROXY, t, DELTA): v - BASE_PROXY[t] for t, v in scores.items()}
    if detectable is not None:
        metrics["bench/proxy/mmlu/detectable_drop"] = detectable
    return TrialRecord(trial_id=trial_id, run_id=run_id, params={}, status="completed",
                       metrics=metrics)  # fmt: skip


def new_sweep(tmp_path: Path) -> tuple[SweepState, SweepTracker]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "guard")
    parent = tracker.start_sweep("s", config={}, tags={}, artifacts={})
    state = SweepState(name="s", directory=str(tmp_path / "s"), config_path="",
                       objective_metric="heldout/field_f1", objective_mode="max",
                       task_metric="field_f1", mlflow_uri=uri, parent_run_id=parent)  # fmt: skip
    return state, tracker


def test_guard_excludes_a_constructed_regression_from_best(tmp_path: Path) -> None:
    state, tracker = new_sweep(tmp_path)
    uri, parent = state.mlflow_uri, state.parent_run_id
    # the best held-out score, but MMLU fell 0.10 below the base: a regression beyond 0.02
    regressed = trial(tracker, parent, "regressed", f1=0.90, mmlu=0.30)
    within = trial(tracker, parent, "within-margin", f1=0.80, mmlu=0.39)
    # no drop seen, but on documents that could not have shown one of 0.02: not called clean
    unseen = trial(tracker, parent, "unseen", f1=0.70, mmlu=0.40, detectable=0.09)
    state.trials = {t.trial_id: t for t in (regressed, within, unseen)}
    assert state.best_trial() is regressed  # before the guard has judged
    said: list[str] = []
    spec = TrialSpec(model_path="unused", benchmarks=plan(),
                     data=DataConfig(train="unused", task_metric="field_f1"))  # fmt: skip
    guard_and_score_finalists(state, tracker, spec=spec, say=said.append)
    assert state.best_trial() is within
    assert regressed.guard == [
        "mmlu: -0.1000 vs base on 900 documents (proxy) (drop 0.1000 > margin 0.0200)"
    ]
    assert within.guard == [] and within.guard_open == []
    assert unseen.guard == [] and unseen.guard_open == [
        "mmlu: not cleared: +0.0000 vs base on 900 documents (proxy), but the margin is 2.0 "
        "points and they detect a drop of 9.0 points or more"
    ]
    client = MlflowClient(tracking_uri=uri)
    tags = client.get_run(regressed.run_id).data.tags
    assert tags["guard"] == "failed" and "mmlu" in tags["guard.reason"]
    assert client.get_run(within.run_id).data.tags["guard"] == "passed"
    tags = client.get_run(unseen.run_id).data.tags
    assert tags["guard"] == "unresolved" and "9.0 points" in tags["guard.reason"]
    assert any("regressed excluded from best" in line for line in said)
    assert any(line.startswith("Guard: trial unseen not called clean: mmlu") for line in said)
    from rich.console import Console

    from sweeps.driver.display import trials_table

    console = Console(record=True, width=200)
    console.print(trials_table(state))
    text = console.export_text()
    assert "guard" in next(line for line in text.splitlines() if "regressed" in line)
    assert "within-margin *" in text  # the best is starred


def test_when_every_trial_regresses_there_is_no_best(tmp_path: Path) -> None:
    state, tracker = new_sweep(tmp_path)
    parent = state.parent_run_id
    state.trials = {"a": trial(tracker, parent, "a", f1=0.9, mmlu=0.1)}
    spec = TrialSpec(model_path="unused", benchmarks=plan(),
                     data=DataConfig(train="unused", task_metric="field_f1"))  # fmt: skip
    guard_and_score_finalists(state, tracker, spec=spec, say=lambda _: None)
    assert state.best_trial() is None


def test_on_the_proxy_a_drop_that_could_be_chance_is_not_flagged(tmp_path: Path) -> None:
    """Both trials lost 0.10 on the proxy's MMLU; McNemar says only one of them means it."""
    state, tracker = new_sweep(tmp_path)
    parent = state.parent_run_id
    chance = trial(tracker, parent, "chance", f1=0.90, mmlu=0.30)
    chance.metrics[bench_name(PROXY, "mmlu", DELTA_P_VALUE)] = 0.5
    real = trial(tracker, parent, "real", f1=0.85, mmlu=0.30)
    real.metrics[bench_name(PROXY, "mmlu", DELTA_P_VALUE)] = 0.01
    state.trials = {t.trial_id: t for t in (chance, real)}
    spec = TrialSpec(model_path="unused", benchmarks=plan(),
                     data=DataConfig(train="unused", task_metric="field_f1"))  # fmt: skip
    guard_and_score_finalists(state, tracker, spec=spec, say=lambda _: None)
    assert chance.guard == [] and real.guard and state.best_trial() is chance


def test_the_sweep_and_the_promotion_gate_give_one_verdict(tmp_path: Path) -> None:
    """guard_and_score_finalists and the gate's re-read agree on every trial: a past finalist's full-set
    delta is what counts where it has one, the proxy's elsewhere (one task not on the full
    sets), and a proxy loss counts only when the paired test says it is more than chance."""
    state, tracker = new_sweep(tmp_path)
    parent = state.parent_run_id
    margins = {"mmlu": 0.02, "arc_challenge": 0.02}
    cases = {
        "proxy-real": {"bench/proxy/mmlu/delta_p_value": 0.01},
        "proxy-chance": {"bench/proxy/mmlu/delta_p_value": 0.5},
        "proxy-untested": {},
        "full-clears-it": {"bench/full/mmlu/delta": 0.0, "bench/proxy/mmlu/delta_p_value": 0.01},
        "full-loses": {"bench/full/mmlu/delta": -0.05, "bench/full/mmlu/delta_p_value": 0.5},
        "full-lacks-arc": {"bench/full/mmlu/delta": 0.0, "bench/proxy/arc_challenge/delta": -0.2,
                           "bench/proxy/arc_challenge/delta_p_value": 0.001},
    }  # fmt: skip
    for name, extra in cases.items():
        record = trial(tracker, parent, name, f1=0.5, mmlu=0.30)
        record.metrics |= extra
        state.trials[name] = record
    spec = TrialSpec(model_path="unused", benchmarks=plan(guard=margins),
                     data=DataConfig(train="unused", task_metric="field_f1"))  # fmt: skip
    guard_and_score_finalists(state, tracker, spec=spec, say=lambda _: None)
    verdicts = {name: bool(t.guard) for name, t in state.trials.items()}
    assert verdicts == {"proxy-real": True, "proxy-chance": False, "proxy-untested": True,
                        "full-clears-it": False, "full-loses": True, "full-lacks-arc": True}  # fmt: skip
    for record in state.trials.values():
        assert record.guard == guard_violations(record.metrics, margins), record.trial_id
