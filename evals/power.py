"""Statistical power of the paired benchmark comparison: how small a regression can be seen.

A fine-tuned adapter is compared with the base model on the same benchmark documents (paired, see
:mod:`evals.paired`). A delta that is "not significant" only means something next to the
**minimum detectable regression** (MDR): the smallest drop in the task's score that the paired
test would detect with 80% power at two-sided alpha 0.05 on that many documents. This module
computes the MDR for a document count, and the document count needed for a given MDR.

Two kinds of per-document scores:

- **0/1 scores** (accuracy, exact match): McNemar's exact test, the two-sided binomial test of
  the discordant documents against an even split. A regression of size ``drop`` on top of
  background churn ``churn`` (the share of documents a healthy adapter changes, half each way)
  makes each document independently *worse* with probability ``churn/2 + drop``, *better* with
  probability ``churn/2`` and tied otherwise. The power is computed exactly: the discordant count
  is K ~ Binomial(n, churn + drop); given K = k the worse count is W ~ Binomial(k, q) with
  q = (churn/2 + drop) / (churn + drop); the test rejects with the candidate worse iff W >= c_k,
  the smallest w > k/2 whose two-sided p-value min(1, 2 P(Binomial(k, 1/2) >= w)) is below alpha.
  So power = sum_k P(K = k) P(W >= c_k | k). Power is monotone in the drop for a fixed n (raising
  the drop turns ties into worse documents), but a sawtooth in n (the discrete critical values),
  so document counts are chosen on a window, see :func:`documents_needed`.
- **Graded scores** (a probability mass in [0, 1], F1): the paired bootstrap interval, which is
  close to a paired z-test: MDR = (z_{1-alpha/2} + z_power) sd / sqrt(n), with sd the standard
  deviation of the per-document differences.

The "spread" is the churn for 0/1 scores and the sd for graded ones. Before anything has been
observed the planning defaults are used; an observation from enough documents can only raise them
(:func:`planning_spread`). Points are the drop x 100 (scores are in [0, 1]).

Finalists scored in stages look at a growing sample several times; :func:`look_alpha` and
:func:`look_sizes` pre-declare those looks.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from evals.paired import PairedComparison

ALPHA = 0.05
POWER = 0.8
PLANNING_CHURN = 0.10  # share of 0/1 documents a healthy adapter changes, when none is observed
PLANNING_SD = 0.10  # sd of per-document differences of graded scores, when none is observed
MIN_OBSERVED_DOCUMENTS = 30  # an observed spread counts from this many documents
BINARY, GRADED = "binary", "graded"
RESOLUTION = 0.001  # the grid of binary detectable drops
WINDOW = 1.25  # documents_needed: every count up to this factor above must keep the power
_TINY = 1e-20  # binomial probabilities below this are dropped from the running distribution


def mcnemar_power(n: int, *, drop: float, churn: float, alpha: float = ALPHA) -> float:
    """Exact probability that McNemar's exact test on ``n`` documents rejects at two-sided
    ``alpha`` with the candidate worse, for a regression of ``drop`` on top of ``churn``.

    ``drop`` is capped at ``1 - churn`` (the worse and better probabilities, ``churn/2 + drop``
    and ``churn/2``, cannot add up to more than 1)."""
    import numpy as np
    from scipy import stats

    _check_n(n)
    drop = _capped_drop(drop, churn=churn)
    _check_level(alpha, "alpha")
    discordant = churn + drop
    if n == 0 or discordant <= 0.0:
        return 0.0
    reject = _reject_given_discordant(n, drop=drop, churn=churn, alpha=alpha)
    weights = stats.binom.pmf(np.arange(n + 1), n, min(discordant, 1.0))
    return float(min(1.0, max(0.0, float(np.dot(weights, reject)))))


def detectable_drop(
    n: int, *, kind: str, spread: float, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The minimum detectable regression on ``n`` documents (``spread``: churn or sd).

    BINARY: the smallest drop on a 0.001 grid with :func:`mcnemar_power` >= ``power``, by
    bisection on the drop (power is monotone in the drop for a fixed n); ``math.inf`` when even
    the largest possible drop, ``1 - churn``, is not detected (always below 6 documents: McNemar's
    exact test cannot reach p < 0.05 two-sided on fewer than 6 discordant documents).
    GRADED: (z_{1-alpha/2} + z_power) sd / sqrt(n); ``math.inf`` below 2 documents."""
    _check_kind(kind)
    _check_n(n)
    _check_spread(spread, kind=kind)
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    if kind == GRADED:
        return math.inf if n < 2 else _z_sum(alpha, power) * spread / math.sqrt(n)
    largest = 1.0 - spread
    steps = math.ceil(largest / RESOLUTION - 1e-9)

    def detected(step: int) -> bool:
        drop = min(step * RESOLUTION, largest)
        return mcnemar_power(n, drop=drop, churn=spread, alpha=alpha) >= power

    if n == 0 or not detected(steps):
        return math.inf
    low, high = -1, steps  # not detected at low (a virtual step), detected at high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if detected(middle) else (middle, high)
    return min(round(high * RESOLUTION, 3), largest)


def documents_needed(
    drop: float,
    *,
    kind: str,
    spread: float,
    alpha: float = ALPHA,
    power: float = POWER,
    limit: int = 100_000,
) -> int:
    """The smallest document count whose detectable drop is at most ``drop``.

    BINARY: the exact test's power is a sawtooth in n (a count can detect the drop while the next
    one does not), so this is the smallest n such that EVERY n' from n up to 1.25 n has power >=
    ``power`` against ``drop`` (taken on the 0.001 grid of :func:`detectable_drop`, rounded down),
    so a few documents more, lost or added, keep the resolution. Found from the normal
    approximation of McNemar's sample size: the scan starts at half of it (lower while that count
    already has the power) and walks up the exact power, n by n. GRADED: the closed form
    ceil(((z_{1-alpha/2} + z_power) sd / drop)^2), at least 2.

    Raises ValueError when more than ``limit`` documents would be needed, or the drop is not
    possible (binary: above ``1 - churn``, or below the 0.001 grid)."""
    _check_kind(kind)
    _check_spread(spread, kind=kind)
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    if not drop > 0 or not math.isfinite(drop):
        raise ValueError(f"the drop to detect must be positive and finite, not {drop}")
    if kind == GRADED:
        return _graded_documents(drop, sd=spread, alpha=alpha, power=power, limit=limit)
    return _binary_documents(drop, churn=spread, alpha=alpha, power=power, limit=limit)


def observed_spread(diffs: Sequence[float], *, kind: str) -> float | None:
    """The spread of observed per-document differences (candidate - base): BINARY the churn, the
    share of documents that changed; GRADED the sample sd (ddof=1). None below 2 documents."""
    _check_kind(kind)
    values = [float(d) for d in diffs]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("per-document differences must be finite")
    if len(values) < 2:
        return None
    if kind == GRADED:
        return statistics.stdev(values)
    if any(v not in (-1.0, 0.0, 1.0) for v in values):
        raise ValueError("differences of 0/1 scores are -1, 0 or 1")
    return sum(v != 0.0 for v in values) / len(values)


def planning_spread(kind: str, observed: float | None = None, *, n_observed: int = 0) -> float:
    """The spread to plan with: the planning default (PLANNING_CHURN, PLANNING_SD) unless the
    observation comes from at least 30 documents, then the larger of the two. Conservative: a
    larger spread only makes the detectable drop larger."""
    _check_kind(kind)
    default = PLANNING_CHURN if kind == BINARY else PLANNING_SD
    if observed is None or n_observed < MIN_OBSERVED_DOCUMENTS:
        return default
    _check_spread(observed, kind=kind)
    return max(observed, default)


@dataclass(frozen=True)
class Resolution:
    """What a paired comparison on ``n`` documents can resolve: ``detectable`` is the minimum
    detectable regression (``math.inf`` when nothing is detectable)."""

    n: int
    kind: str  # binary (McNemar) | graded (paired bootstrap)
    spread: float  # churn (binary) | sd of the per-document differences (graded)
    detectable: float
    alpha: float = ALPHA
    power: float = POWER

    def resolves(self, margin: float) -> bool:
        """A regression of ``margin`` or more would be detected."""
        return self.detectable <= margin + 1e-9

    def describe(self) -> str:
        documents = f"{self.n} document{'' if self.n == 1 else 's'}"
        if math.isinf(self.detectable):
            why = "; McNemar needs at least 6 discordant documents" if self.kind == BINARY else ""
            return f"too few documents to detect a regression ({documents}{why})"
        test, spread = (
            ("paired McNemar", f"{_percent(self.spread)} churn")
            if self.kind == BINARY
            else ("paired bootstrap", f"sd {self.spread:.3f}")
        )
        return (
            f"detects a drop of {self.detectable * 100:.1f} points or more ({_percent(self.power)}"
            f" power, alpha {self.alpha:g}, {test}, {documents}, {spread})"
        )


def resolution(
    n: int, *, kind: str, spread: float, alpha: float = ALPHA, power: float = POWER
) -> Resolution:
    """The :class:`Resolution` of ``n`` documents (see :func:`detectable_drop`)."""
    detectable = detectable_drop(n, kind=kind, spread=spread, alpha=alpha, power=power)
    return Resolution(
        n=n, kind=kind, spread=spread, detectable=detectable, alpha=alpha, power=power
    )


def look_alpha(looks: int, *, alpha: float = ALPHA) -> float:
    """The per-look alpha for ``looks`` pre-declared looks: Bonferroni, ``alpha / looks``.

    Testing a growing sample again and again inflates the chance of a false alarm: each look is
    another chance for noise to cross the line. Splitting alpha evenly over a fixed number of
    looks, declared before the first, bounds the overall error by alpha (conservative, since the
    looks share documents and are positively correlated) and needs no group-sequential tables."""
    if isinstance(looks, bool) or not isinstance(looks, int) or looks < 1:
        raise ValueError(f"the number of looks must be a positive integer, not {looks!r}")
    _check_level(alpha, "alpha")
    return alpha / looks


def look_sizes(target: int, *, first: int, looks: int) -> list[int]:
    """Pre-declared sample sizes of the looks: geometric from ``first`` to ``target`` inclusive,
    rounded, strictly increasing (duplicates from rounding merged, so possibly fewer than
    ``looks``). ``look_sizes(500, first=100, looks=3) == [100, 224, 500]``."""
    for name, value in (("target", target), ("first", first), ("looks", looks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if first > target:
        raise ValueError(f"the first look ({first}) is past the target ({target})")
    if looks == 1:
        return [target]
    ratio = target / first
    sizes = [math.floor(first * ratio ** (i / (looks - 1)) + 0.5) for i in range(looks - 1)]
    return sorted({*sizes, first, target})


# --- McNemar's exact test -------------------------------------------------------------------


@lru_cache(maxsize=32)
def _critical_counts(k_max: int, alpha: float) -> NDArray[np.int64]:
    """c_k for k = 0..k_max: the smallest worse count w > k/2 with two-sided exact p < alpha;
    k + 1 (unreachable) where there is none. Read-only."""
    import numpy as np
    from scipy import stats

    k = np.arange(k_max + 1)

    def p_value(w: NDArray[np.int64]) -> NDArray[np.float64]:
        p: NDArray[np.float64] = np.minimum(1.0, 2.0 * stats.binom.sf(w - 1, k, 0.5))
        return p

    guess = np.nan_to_num(stats.binom.ppf(1.0 - alpha / 2.0, k, 0.5), nan=0.0)
    counts = np.maximum(guess.astype(np.int64), k // 2 + 1)  # ppf + 1 is the answer, up to 1 off
    for _ in range(3):
        counts = np.where((counts <= k) & (p_value(counts) >= alpha), counts + 1, counts)
    counts = np.where((counts <= k) & (p_value(counts) < alpha), counts, k + 1)
    counts.setflags(write=False)
    return counts


def _reject_given_discordant(
    k_max: int, *, drop: float, churn: float, alpha: float
) -> NDArray[np.float64]:
    """P(W >= c_k | K = k) for k = 0..k_max: the test rejects with the candidate worse."""
    import numpy as np
    from scipy import stats

    counts = _critical_counts(k_max, alpha)
    q = min(1.0, (churn / 2.0 + drop) / (churn + drop))
    reject = stats.binom.sf(counts - 1, np.arange(k_max + 1), q)
    return np.where(counts <= np.arange(k_max + 1), reject, 0.0)


def _binary_documents(drop: float, *, churn: float, alpha: float, power: float, limit: int) -> int:
    import numpy as np
    from scipy import stats

    largest = 1.0 - churn
    grid = math.floor(drop / RESOLUTION + 1e-9) * RESOLUTION
    if grid <= 0.0 or grid > largest + 1e-12:
        raise ValueError(
            f"a drop of {drop} is not detectable at {_percent(churn)} churn (detectable drops "
            f"run from {RESOLUTION} to {largest:.3f})"
        )
    grid = min(grid, largest)
    discordant = min(1.0, churn + grid)
    start = max(0, int(_normal_documents(grid, churn=churn, alpha=alpha, power=power) / 2))
    while start > 0 and mcnemar_power(start, drop=grid, churn=churn, alpha=alpha) >= power:
        start //= 2
    # Walk n up from start (not powered), carrying the distribution of the discordant count
    # (Binomial(n, discordant), a band [low, low + len) of it) one document at a time.
    reject = _reject_given_discordant(max(64, 2 * start), drop=grid, churn=churn, alpha=alpha)
    low = 0
    weights = stats.binom.pmf(np.arange(start + 1), start, discordant)
    last_short = start  # the largest count seen without the power
    n = start
    while True:
        if last_short + 1 > limit:
            raise ValueError(
                f"detecting a drop of {grid:g} at {_percent(churn)} churn needs more than "
                f"{limit} documents"
            )
        if n >= math.floor(WINDOW * (last_short + 1)):
            return last_short + 1
        n += 1
        grown = np.zeros(len(weights) + 1)
        grown[:-1] = weights * (1.0 - discordant)
        grown[1:] += weights * discordant
        kept = np.flatnonzero(grown > _TINY)
        low, weights = low + int(kept[0]), grown[kept[0] : kept[-1] + 1]
        if n >= len(reject):
            reject = _reject_given_discordant(2 * n, drop=grid, churn=churn, alpha=alpha)
        if float(np.dot(weights, reject[low : low + len(weights)])) < power:
            last_short = n


def _normal_documents(drop: float, *, churn: float, alpha: float, power: float) -> float:
    """The normal approximation of McNemar's sample size (Connor 1987): discordant share
    p = churn + drop, n = (z_{1-alpha/2} sqrt(p) + z_power sqrt(p - drop^2))^2 / drop^2."""
    from scipy import stats

    discordant = churn + drop
    z_alpha, z_power = stats.norm.ppf(1.0 - alpha / 2.0), stats.norm.ppf(power)
    spread = z_alpha * math.sqrt(discordant) + z_power * math.sqrt(discordant - drop**2)
    return float(spread**2 / drop**2)


# --- graded scores --------------------------------------------------------------------------


def _z_sum(alpha: float, power: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))


def _graded_documents(drop: float, *, sd: float, alpha: float, power: float, limit: int) -> int:
    n = max(2, math.ceil((_z_sum(alpha, power) * sd / drop) ** 2))

    def enough(count: int) -> bool:
        return detectable_drop(count, kind=GRADED, spread=sd, alpha=alpha, power=power) <= drop

    while not enough(n):  # floating point at the ceiling: make the answer exact both ways
        n += 1
    while n > 2 and enough(n - 1):
        n -= 1
    if n > limit:
        raise ValueError(f"detecting a drop of {drop:g} at sd {sd:g} needs {n} > {limit} documents")
    return n


# --- checks and formatting ------------------------------------------------------------------


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def _check_kind(kind: str) -> None:
    if kind not in (BINARY, GRADED):
        raise ValueError(f"unknown kind of score {kind!r} (expected {BINARY!r} or {GRADED!r})")


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the number of documents must be a non-negative integer, not {n!r}")


def _check_level(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, not {value}")


def _check_spread(spread: float, *, kind: str) -> None:
    if kind == BINARY and not 0.0 <= spread <= 1.0:
        raise ValueError(f"the churn is a share in [0, 1], not {spread}")
    if kind == GRADED and not (spread >= 0.0 and math.isfinite(spread)):
        raise ValueError(f"the sd of the differences must be non-negative and finite, not {spread}")


def _capped_drop(drop: float, *, churn: float) -> float:
    _check_spread(churn, kind=BINARY)
    if not drop >= 0.0:
        raise ValueError(f"the drop must be non-negative, not {drop}")
    return min(drop, 1.0 - churn)


def resolution_of(comparison: PairedComparison) -> Resolution:
    """What a paired comparison with the base could resolve: McNemar's for 0/1 scores, the
    bootstrap's for graded ones, at the spread to plan with (the default, or what these
    documents showed when that is larger)."""
    from evals.paired import MCNEMAR

    n = comparison.n
    if comparison.test == MCNEMAR:
        # the background churn is the symmetric part of the discordance: a regression adds
        # worse documents on top of it, so twice the smaller side estimates it
        both = min(comparison.candidate_better, comparison.reference_better)
        churn = 2 * both / max(n, 1)
        spread = planning_spread(BINARY, churn, n_observed=n)
        return resolution(n, kind=BINARY, spread=spread)
    sd = comparison.diff_sd if math.isfinite(comparison.diff_sd) else None
    return resolution(n, kind=GRADED, spread=planning_spread(GRADED, sd, n_observed=n))
