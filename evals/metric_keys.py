"""Every metric name the sweep logs, written and read here only (standard library, no torch).

A trial's run (its MLflow child run, and its record in state.json), at each rung:

- ``heldout/loss``, ``heldout/perplexity`` (every held-out row), ``heldout/<task metric>`` and
  ``heldout/exact_match`` (the generated rows)
- ``train/loss``, ``train/tokens_per_second``, ``train/seconds``, ``tokens_trained``, ``epoch``,
  ``rung``; ``data/truncated_fraction``, ``data/dropped_examples``
- ``trial/first_step_at``, ``trial/startup_seconds`` (and, in the result only, ``trial/pid``,
  ``trial/node_id``, ``trial/cuda_visible_devices``)
- ``cost/wall_seconds``, ``cost/device_seconds``, ``cost/peak_memory_mb``
- ``objective/composite`` (the proxy's deltas) and, for a finalist, ``objective/composite_full``;
  ``objective/benchmark_delta`` (the mean proxy delta over the benchmark tasks, at the last rung)
- ``bench/<phase>/<task>/<stat>`` (:class:`BenchKey`): lm-eval's metrics (``acc``,
  ``acc_norm``, ``acc_stderr``, ...), the ``delta`` against the base model on the same
  documents, its paired test (``delta_ci_low``, ``delta_ci_high``, ``delta_p_value``), the
  ``documents`` it rests on and the ``detectable_drop`` they can show (absent: none), and the
  task's ``seconds``; ``bench/<phase>/seconds`` for the whole phase

The sweep's parent run: ``base/<name>`` (the base model's, e.g. ``base/heldout/loss``,
``base/bench/full/mmlu/acc``), ``best/<name>`` (the best trial's), ``trials/<status>`` (counts),
``cost/device_hours`` and ``cost/gain_per_device_hour``. A ``sweep compare`` run:
``heldout/delta``, ``heldout/delta_ci_low``, ``heldout/delta_ci_high``,
``heldout/delta_p_value``, ``heldout/wins``, ``heldout/losses``. A ``sweep judge`` run:
``judge/<stat>`` (wins, ties, losses, unparsed, win_rate and its interval, p_value),
``judge/self_agreement``, ``judge/asked``, ``judge/cached``; a ``sweep human import`` run:
``human/<stat>``, ``human/ratings``, ``human/raters``, ``human/judge_kappa``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SEP = "/"

# --------------------------------------------------------------------------- groups
HELDOUT, TRAIN, DATA, TRIAL, COST = "heldout", "train", "data", "trial", "cost"
BENCH, OBJECTIVE = "bench", "objective"
BASE, BEST, TRIALS = "base", "best", "trials"  # the parent run's: whose value, or a count


def group_of(name: str) -> str:
    """``heldout/loss`` -> ``heldout``; ``""`` for a name without a group (``tokens_trained``)."""
    group, sep, _ = name.partition(SEP)
    return group if sep else ""


# --------------------------------------------------------------------------- held-out
HELDOUT_LOSS = "heldout/loss"
HELDOUT_PERPLEXITY = "heldout/perplexity"
HELDOUT_EXACT_MATCH = "heldout/exact_match"
HELDOUT_TASK_METRIC = "heldout/task_metric"  # the config's stand-in for heldout/<task metric>
LOWER_IS_BETTER = (HELDOUT_LOSS, HELDOUT_PERPLEXITY)  # per-token means over every held-out row

# a ``sweep compare`` run: A - B on the held-out rows
HELDOUT_DELTA = "heldout/delta"
HELDOUT_DELTA_CI_LOW = "heldout/delta_ci_low"
HELDOUT_DELTA_CI_HIGH = "heldout/delta_ci_high"
HELDOUT_DELTA_P_VALUE = "heldout/delta_p_value"
HELDOUT_WINS = "heldout/wins"
HELDOUT_LOSSES = "heldout/losses"

# pairwise preferences, A against B: a ``sweep judge`` run's (``judge/...``) and a ``sweep human
# import`` run's (``human/...``), and the same names on a ``sweep compare`` run that shows them
JUDGE, HUMAN = "judge", "human"
PREFERENCE_STATS = (
    "wins",
    "ties",
    "losses",
    "unparsed",
    "win_rate",
    "win_rate_ci_low",
    "win_rate_ci_high",
    "p_value",
)
JUDGE_SELF_AGREEMENT = "judge/self_agreement"  # the same verdict in both orders
JUDGE_ASKED, JUDGE_CACHED = "judge/asked", "judge/cached"  # calls made, answers reused
HUMAN_RATINGS, HUMAN_RATERS = "human/ratings", "human/raters"
HUMAN_JUDGE_KAPPA = "human/judge_kappa"  # Cohen's kappa, humans against the judge


def preference(source: str, stat: str) -> str:
    """``preference("judge", "win_rate")`` -> ``judge/win_rate``."""
    if source not in (JUDGE, HUMAN) or stat not in PREFERENCE_STATS:
        raise ValueError(f"unknown preference metric {source}/{stat}")
    return _join(source, stat)


def heldout(metric: str) -> str:
    """``field_f1`` -> ``heldout/field_f1``."""
    return _join(HELDOUT, _part(metric, what="held-out metric"))


def heldout_metric(name: str) -> str | None:
    """``heldout/field_f1`` -> ``field_f1``; None for a name of another group."""
    group, _, rest = name.partition(SEP)
    return rest if group == HELDOUT and rest else None


def short_name(name: str) -> str:
    """A column header: ``heldout/field_f1`` -> ``field_f1``; ``train/loss`` -> ``train_loss``."""
    return heldout_metric(name) or name.replace(SEP, "_")


def second_metric(objective: str) -> str:
    """The loss shown beside the objective: the training loss when the objective is the
    held-out loss, else the held-out loss."""
    return TRAIN_LOSS if objective == HELDOUT_LOSS else HELDOUT_LOSS


# --------------------------------------------------------------------------- training, cost
TRAIN_LOSS = "train/loss"
TRAIN_TOKENS_PER_SECOND = "train/tokens_per_second"
TRAIN_SECONDS = "train/seconds"
TOKENS_TRAINED, EPOCH = "tokens_trained", "epoch"
STEP, RUNG, FINAL_RUNG = "step", "rung", "final_rung"  # final_rung: 1.0 at the trial's last
DATA_TRUNCATED_FRACTION = "data/truncated_fraction"
DATA_DROPPED_EXAMPLES = "data/dropped_examples"
TRIAL_PID = "trial/pid"
TRIAL_FIRST_STEP_AT = "trial/first_step_at"
TRIAL_STARTUP_SECONDS = "trial/startup_seconds"
TRIAL_NODE_ID = "trial/node_id"
TRIAL_CUDA_VISIBLE_DEVICES = "trial/cuda_visible_devices"
COST_WALL_SECONDS = "cost/wall_seconds"
COST_DEVICE_SECONDS = "cost/device_seconds"
COST_PEAK_MEMORY_MB = "cost/peak_memory_mb"
COST_DEVICE_HOURS = "cost/device_hours"  # the parent run's: every trial's
COST_GAIN_PER_DEVICE_HOUR = "cost/gain_per_device_hour"

# what of a trial's result reaches MLflow and state.json: these groups, and these names
LOGGED_GROUPS = (HELDOUT, TRAIN, DATA, BENCH, OBJECTIVE, COST)
LOGGED_NAMES = (TOKENS_TRAINED, EPOCH, RUNG, TRIAL_FIRST_STEP_AT, TRIAL_STARTUP_SECONDS)


def is_logged(name: str) -> bool:
    """Whether a trial's result value named ``name`` is one the sweep logs."""
    return group_of(name) in LOGGED_GROUPS or name in LOGGED_NAMES


# --------------------------------------------------------------------------- benchmarks
PROXY, FULL = "proxy", "full"  # each trial's seeded subset; the finalists' full sets
PHASES = (PROXY, FULL)
DELTA = "delta"  # the primary score minus the base model's on the same documents
DELTA_CI_LOW, DELTA_CI_HIGH = "delta_ci_low", "delta_ci_high"  # its paired 95% interval
DELTA_P_VALUE = "delta_p_value"  # McNemar's exact test (0/1 scores only)
DOCUMENTS = "documents"  # how many documents the paired comparison with the base rests on
# the minimum detectable regression on those documents (80% power, alpha 0.05, evals/power.py);
# not logged when no regression could be detected on them
DETECTABLE_DROP = "detectable_drop"
SECONDS = "seconds"


@dataclass(frozen=True)
class BenchKey:
    """``bench/<phase>/<task>/<stat>``: ``stat`` is one of lm-eval's metrics (``acc``,
    ``acc_norm``, ``acc_stderr``) or one the sweep adds (``delta``, ``delta_ci_low``,
    ``delta_ci_high``, ``delta_p_value``, ``seconds``)."""

    phase: str
    task: str
    stat: str

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"benchmark phase {self.phase!r}: not one of {', '.join(PHASES)}")
        _part(self.task, what="benchmark task")
        _part(self.stat, what="benchmark statistic")

    @property
    def name(self) -> str:
        return _join(BENCH, self.phase, self.task, self.stat)

    @classmethod
    def parse(cls, name: str) -> BenchKey | None:
        """The key a name spells; None for any other name (``bench/proxy/seconds``,
        ``base/bench/...``, ``heldout/loss``)."""
        parts = name.split(SEP)
        if len(parts) != 4 or parts[0] != BENCH or parts[1] not in PHASES:
            return None
        _, phase, task, stat = parts
        return cls(phase, task, stat) if task and stat else None


def bench_name(phase: str, task: str, stat: str) -> str:
    """``bench/<phase>/<task>/<stat>``."""
    return BenchKey(phase, task, stat).name


def phase_seconds(phase: str) -> str:
    """``bench/<phase>/seconds``: the whole phase's scoring, the task index included."""
    if phase not in PHASES:
        raise ValueError(f"benchmark phase {phase!r}: not one of {', '.join(PHASES)}")
    return _join(BENCH, phase, SECONDS)


def bench_metrics(phase: str, scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Every task's metrics (``BenchmarkScores.metrics``: task -> lm-eval metric -> value) as
    ``bench/<phase>/<task>/<metric>``."""
    return {
        bench_name(phase, task, stat): value
        for task, stats in scores.items()
        for stat, value in stats.items()
    }


def task_stats(metrics: Mapping[str, float], *, phase: str, task: str) -> dict[str, float]:
    """What was logged for one task in one phase, by statistic: ``{"acc": 0.41, "delta":
    -0.02, ...}`` (empty when nothing was)."""
    out = {}
    for name, value in metrics.items():
        key = BenchKey.parse(name)
        if key is not None and key.phase == phase and key.task == task:
            out[key.stat] = value
    return out


@dataclass(frozen=True)
class LoggedDelta:
    """A task's logged difference from the base model on one phase's documents, with its
    paired test when one was logged."""

    phase: str
    task: str
    delta: float
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    documents: int | None = None  # None: logged before documents were (an older sweep)
    detectable: float | None = None  # None: nothing detectable on those documents

    @property
    def tested(self) -> bool:
        """Whether a paired test was logged (McNemar's p, or a bootstrap interval)."""
        return self.p_value is not None or self.ci_high is not None

    @classmethod
    def read(cls, metrics: Mapping[str, float], *, phase: str, task: str) -> LoggedDelta | None:
        """The task's delta in ``phase``; None when none was logged."""
        stats = task_stats(metrics, phase=phase, task=task)
        if DELTA not in stats:
            return None
        documents = stats.get(DOCUMENTS)
        return cls(
            phase,
            task,
            stats[DELTA],
            stats.get(DELTA_CI_LOW),
            stats.get(DELTA_CI_HIGH),
            stats.get(DELTA_P_VALUE),
            None if documents is None else int(documents),
            stats.get(DETECTABLE_DROP),
        )


# --------------------------------------------------------------------------- the objective
COMPOSITE = "objective/composite"  # held-out metric + weighted proxy deltas; every rung
COMPOSITE_FULL = f"{COMPOSITE}_{FULL}"  # the same with the full sets' deltas (finalists)


BENCHMARK_DELTA = "objective/benchmark_delta"  # the mean proxy delta over the tasks; last rung
# what else a multi-objective sweep may put beside its held-out metric (objective.also)
SECOND_OBJECTIVES = (BENCHMARK_DELTA, COST_DEVICE_SECONDS, COST_PEAK_MEMORY_MB)
MINIMISED = (*LOWER_IS_BETTER, COST_DEVICE_SECONDS, COST_PEAK_MEMORY_MB)  # lower is better


def composite_name(phase: str) -> str:
    """The composite objective of a phase's deltas."""
    return {PROXY: COMPOSITE, FULL: COMPOSITE_FULL}[phase]


# --------------------------------------------------------------------------- the parent run
def with_group(group: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """Every name under ``group``: ``{"heldout/loss": 1.2}`` -> ``{"base/heldout/loss": 1.2}``."""
    return {_join(_part(group, what="group"), name): value for name, value in metrics.items()}


def under_group(group: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """The names under ``group``, without it (the others left out): ``base/heldout/loss`` ->
    ``heldout/loss``."""
    prefix = _join(group, "")
    return {
        name.removeprefix(prefix): value
        for name, value in metrics.items()
        if name.startswith(prefix) and len(name) > len(prefix)
    }


def trials_count(status: str) -> str:
    """``trials/<status>``: how many trials of the sweep ended so (the parent run's)."""
    return _join(TRIALS, _part(status, what="trial status"))


# --------------------------------------------------------------------------- helpers
def _join(*parts: str) -> str:
    return SEP.join(parts)


def _part(text: str, *, what: str) -> str:
    """One part of a name: not empty, no separator in it."""
    if not text or SEP in text:
        raise ValueError(f"{what} {text!r}: must be non-empty and without {SEP!r}")
    return text
