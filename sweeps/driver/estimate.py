"""How long a sweep will take on this machine, before it runs (``sweep validate``, ``sweep init``).

``trainers/timing.py`` times one short trial on the real model and data (setup, a few
optimizer steps, one rung's evaluation and checkpoint). This module scales those seconds to the
sweep by simulating it many times (seeded): each trial draws its epochs and sequence_len from the
space (a step costs what its tokens cost at that length), ASHA's early stops (the first trial to
reach a rung always goes on; later ones go on with probability 1/reduction_factor, as for
exchangeable trials), and the trials are packed ``concurrency`` at a time, first free slot first.
The mean of the simulated sweeps, plus the base model's one held-out scoring (unless cached),
the benchmarks the driver scores outside the trials (the finalist tier and the base model's
uncached scores: from each finalist task's first look to all its looks, at a measured share of
the timed trial's seconds per benchmark document), and the driver's own start and end, is the
estimate: a range where the finalists' looks leave it open.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from dataclasses import dataclass

from sweeps.config import AshaConfig, Choice, IntRange, SweepConfig
from sweeps.search.space import active_specs, candidate_values
from trainers.timing import TrialTiming

# Measured on the 2-core machine (docs/perf.md, "Estimate"): the driver's Ray start up to the
# first trial's run, the gap between one trial's end and the next one's start, and the driver's
# end (summary, Ray shutdown). They are small beside the trials; on other machines they differ.
RAY_START_SECONDS = 7.0
TRIAL_GAP_SECONDS = 2.3
DRIVER_END_SECONDS = 4.0
# The driver scores its benchmarks alone, on sets large enough to fill lm-eval's batches; the
# timed trial scores small screening sets, whose fixed per-task costs and part-filled batches
# weigh on each document. Measured on the 2-core machine (docs/perf.md, "(e)"): the demo's 2,790
# documents after its trials took 272 s, 0.098 s each, against the timed screening's 0.245.
DRIVER_DOCUMENT_SHARE = 0.40


@dataclass(frozen=True)
class DriverDocuments:
    """Benchmark documents the driver scores outside the trials (the base model's uncached ones,
    and each finalist's): ``least`` if every finalist task stops at its first look, ``most`` if
    every look runs."""

    least: int = 0
    most: int = 0


@dataclass(frozen=True)
class SweepEstimate:
    trials: int
    concurrency: int
    max_rungs: int  # per trial, at the most epochs
    expected_rungs: float  # per trial, on average, after ASHA's stops
    tokens_per_trial: float  # on average, as trained
    trial_seconds: float  # one trial that runs to its end, on average
    wall_seconds: float
    device_hours: float
    base_seconds: float  # the base model's held-out scoring (0 when cached)
    driver_documents: DriverDocuments = DriverDocuments()  # scored outside the trials
    driver_seconds: float = 0.0  # what the most of them cost
    driver_seconds_least: float = 0.0  # what the least of them cost

    @property
    def wall_seconds_least(self) -> float:
        """The wall time if every finalist task stops at its first look."""
        return self.wall_seconds - (self.driver_seconds - self.driver_seconds_least)

    def lines(self) -> list[str]:
        lines = [
            f"trials: {self.trials}, {self.concurrency} at a time; rungs: up to {self.max_rungs} "
            f"per trial, {self.expected_rungs:.1f} expected after early stopping",
            f"tokens per trial: about {self.tokens_per_trial:,.0f} trained",
            f"a full trial: about {_duration(self.trial_seconds)}",
        ]
        documents = self.driver_documents
        if documents.most:
            count, looks = f"{documents.most:,}", ""
            if documents.least < documents.most:
                count = f"{documents.least:,} to {count}"
                looks = " (the fewer if each finalist's first look settles its verdict)"
            lines.append(
                f"benchmarks after the trials (finalists, and the base model's uncached scores): "
                f"{count} documents, about {_span(self.driver_seconds_least, self.driver_seconds)}"
                f"{looks}"
            )
        return [
            *lines,
            f"estimated wall time: {_span(self.wall_seconds_least, self.wall_seconds)} "
            f"({self.device_hours:.2f} device-hours)",
        ]


def _span(least: float, most: float) -> str:
    """``12 min``, ``12-15 min``, or ``80 s to 2 min`` when the units differ."""
    low, high = _duration(least), _duration(most)
    if low == high:
        return high
    (low_value, low_unit), (_, high_unit) = low.split(), high.split()
    return f"{low_value}-{high}" if low_unit == high_unit else f"{low} to {high}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def concurrency(config: SweepConfig, *, cpus: int, gpus: int) -> int:
    """Trials at once: max_concurrent, capped by what each trial asks of this machine."""
    resources = config.resources
    if resources.gpu > 0 and gpus > 0:
        slots = math.floor(gpus / resources.gpu)
    else:
        slots = math.floor(cpus / max(resources.cpu, 1e-9))
    return max(1, min(config.search.max_concurrent, slots))


def _choices(config: SweepConfig, knob: str) -> list[int]:
    spec = active_specs(config)[knob]
    if isinstance(spec, IntRange):
        return list(range(spec.low, spec.high + 1, spec.step))
    if isinstance(spec, Choice):
        return [int(v) for v in spec.values]
    return [int(v) for v in candidate_values(config, knob)]


def asha_milestones(config: SweepConfig, max_rungs: int) -> tuple[list[int], float]:
    """The rungs at which ASHA may stop a trial (Ray's: grace x factor^k below max_t)."""
    scheduler = config.scheduler
    if not isinstance(scheduler, AshaConfig):
        return [], 1.0
    factor, grace = scheduler.reduction_factor, min(scheduler.grace_period, max_rungs)
    milestones, rung = [], float(grace)
    while rung < max_rungs:  # a trial passes a milestone at the first whole rung past it
        if math.ceil(rung) not in milestones:
            milestones.append(math.ceil(rung))
        rung *= factor
    return milestones, factor


def expected_rungs(rungs: int, milestones: list[int], factor: float, *, first: bool) -> float:
    """Rungs a trial of ``rungs`` rungs is expected to run: past each milestone it goes on with
    probability 1/factor (1 for the first trial to get there)."""
    carry, done, previous = 1.0, 0.0, 0
    for milestone in (m for m in milestones if m < rungs):
        done += carry * (milestone - previous)
        previous = milestone
        carry *= 1.0 if first else 1.0 / factor
    return done + carry * (rungs - previous)


def estimate_sweep(
    config: SweepConfig,
    timing: TrialTiming,
    *,
    num_samples: int,
    token_lengths: list[int],
    cpus: int,
    gpus: int = 0,
    base_cached: bool = False,
    driver_documents: DriverDocuments = DriverDocuments(),
    simulations: int = 400,
) -> SweepEstimate:
    """The sweep's expected wall time and device-hours from one timed trial (``timing``):
    the mean over seeded simulations of the sweep, each drawing every trial's epochs and
    sequence_len from the space and ASHA's stops, then packing the trials on the slots;
    ``driver_documents``: the benchmark documents the driver scores outside the trials."""
    slots = concurrency(config, cpus=cpus, gpus=gpus)
    trials = TrialModel.of(config, timing, token_lengths)
    rng = random.Random(0)
    walls, device, tokens = [], [], []
    for _ in range(simulations):
        drawn = [trials.draw(rng, first=index == 0) for index in range(num_samples)]
        walls.append(makespan([seconds for seconds, _ in drawn], slots))
        device.append(sum(seconds for seconds, _ in drawn))
        tokens += [count for _, count in drawn]
    rungs = [trials.expected_rungs(first=index == 0) for index in range(num_samples)]
    base = 0.0 if base_cached else timing.worker_start + timing.setup + timing.rung
    devices = config.resources.gpu if config.resources.gpu > 0 and gpus else config.resources.cpu
    per_document = DRIVER_DOCUMENT_SHARE * (
        timing.benchmark / timing.benchmark_documents if timing.benchmark_documents else 0
    )
    driver = driver_documents.most * per_document
    return SweepEstimate(
        trials=num_samples,
        concurrency=slots,
        max_rungs=trials.max_rungs,
        expected_rungs=statistics.mean(rungs),
        tokens_per_trial=statistics.mean(tokens),
        trial_seconds=trials.full_trial_seconds(),
        wall_seconds=base
        + RAY_START_SECONDS
        + statistics.mean(walls)
        + driver
        + DRIVER_END_SECONDS,
        device_hours=statistics.mean(device) * devices / 3600,
        base_seconds=base,
        driver_documents=driver_documents if per_document else DriverDocuments(),
        driver_seconds=driver,
        driver_seconds_least=driver_documents.least * per_document,
    )


@dataclass(frozen=True)
class TrialModel:
    """One trial's seconds, rungs and tokens, for a draw of its epochs and sequence_len."""

    timing: TrialTiming
    epochs: list[int]
    lengths: list[int]
    scale: dict[int, float]  # a step's cost at each sequence_len, relative to the timed one
    milestones: list[int]
    factor: float

    @classmethod
    def of(cls, config: SweepConfig, timing: TrialTiming, token_lengths: list[int]) -> TrialModel:
        epochs, lengths = _choices(config, "num_epochs"), _choices(config, "sequence_len")
        timed = max(_mean_tokens(token_lengths, timing.sequence_len), 1e-9)
        scale = {n: _mean_tokens(token_lengths, n) / timed for n in lengths}
        milestones, factor = asha_milestones(config, max(epochs) * timing.rungs_per_epoch)
        return cls(timing, epochs, lengths, scale, milestones, factor)

    @property
    def max_rungs(self) -> int:
        return max(self.epochs) * int(self.timing.rungs_per_epoch)

    def seconds(self, *, rungs: float, length: int, completed: bool) -> float:
        """A trial's seconds; one that completes also scores the proxy benchmarks."""
        t = self.timing
        steps = rungs * t.steps_per_epoch / max(t.rungs_per_epoch, 1)
        return (
            t.worker_start
            + t.setup
            + TRIAL_GAP_SECONDS
            + steps * t.step * self.scale[length]
            + rungs * t.rung
            + (t.benchmark if completed else 0.0)
        )

    def draw(self, rng: random.Random, *, first: bool) -> tuple[float, float]:
        """(seconds, tokens) of one trial: the first to reach a milestone goes on, later ones
        with probability 1/factor."""
        t = self.timing
        length, total = rng.choice(self.lengths), rng.choice(self.epochs) * t.rungs_per_epoch
        rungs = total
        for milestone in (m for m in self.milestones if m < total):
            if not first and rng.random() >= 1 / self.factor:
                rungs = milestone
                break
        steps = rungs * t.steps_per_epoch / max(t.rungs_per_epoch, 1)
        return (
            self.seconds(rungs=rungs, length=length, completed=rungs == total),
            steps * t.tokens_per_step * self.scale[length],
        )

    def expected_rungs(self, *, first: bool) -> float:
        """The rungs a trial is expected to run, over the epochs it may draw."""
        per_epoch = self.timing.rungs_per_epoch
        return statistics.mean(
            expected_rungs(e * per_epoch, self.milestones, self.factor, first=first)
            for e in self.epochs
        )

    def full_trial_seconds(self) -> float:
        """A trial that runs to its end, averaged over the epochs and lengths it may draw."""
        return statistics.mean(
            self.seconds(rungs=e * self.timing.rungs_per_epoch, length=n, completed=True)
            for e in self.epochs
            for n in self.lengths
        )


def _mean_tokens(lengths: list[int], limit: int) -> float:
    return sum(min(n, limit) for n in lengths) / max(len(lengths), 1)


def makespan(durations: list[float], slots: int) -> float:
    """When the last trial ends, trials started in order on the first free slot."""
    free = [0.0] * slots
    for seconds in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + seconds)
    return max(free)
