"""Paired comparison of two models scored on the same items: the evidence behind promotion.

Both models are scored item by item on the same set (held-out rows, benchmark documents), so the
comparison is paired: each item's difference ``candidate - reference`` (a trial against the base
model, a challenger against the champion, A against B in a report). Two questions are answered:

- How large is the difference? The mean difference with a paired bootstrap confidence interval
  (``scipy.stats.bootstrap`` over the per-item differences).
- Is it real? For 0/1 scores (exact match, accuracy) the exact McNemar test on the items where
  the two disagree (``scipy.stats.binomtest``); for graded scores (F1, ROUGE-L) the bootstrap
  interval excluding zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MCNEMAR, BOOTSTRAP = "mcnemar", "bootstrap"


@dataclass(frozen=True)
class PairedComparison:
    """The candidate against the reference on the items both were scored on; ``delta`` is
    mean(candidate) - mean(reference)."""

    n: int
    mean_candidate: float
    mean_reference: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    test: str  # mcnemar (0/1 scores) | bootstrap (graded scores)
    p_value: float | None  # McNemar's exact two-sided p; None for graded scores
    candidate_better: int  # items where the candidate scored higher
    reference_better: int  # items where the reference scored higher
    ties: int
    diff_sd: float = math.nan  # sample sd of the per-item differences (nan below 2 items)

    def significant(self, *, alpha: float | None = None) -> bool:
        """The difference is not chance (see :func:`is_significant`; alpha: 1 - confidence)."""
        return is_significant(
            p_value=self.p_value if self.test == MCNEMAR else None,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            alpha=alpha if alpha is not None else 1 - self.confidence,
        )

    def improves(self, *, mode: str = "max") -> bool:
        """The candidate is significantly better (``mode: min``: scores where lower is better)."""
        improved = self.delta > 0 if mode == "max" else self.delta < 0
        return improved and self.significant()

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def is_significant(
    *, p_value: float | None, ci_low: float, ci_high: float, alpha: float = 0.05
) -> bool:
    """McNemar's p below ``alpha`` for 0/1 scores; otherwise the interval excludes zero."""
    if p_value is not None:
        return p_value < alpha
    return ci_low > 0 or ci_high < 0


def compare_paired(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Compare the candidate with the reference on the items both have scores for (keyed by
    item id): the delta is candidate - reference."""
    import numpy as np
    from scipy import stats

    common = sorted(set(candidate) & set(reference))
    if not common:
        raise ValueError("the two sets of per-item scores have no item in common")
    ours = np.array([float(candidate[i]) for i in common])
    theirs = np.array([float(reference[i]) for i in common])
    diffs = ours - theirs
    binary = bool(np.isin(np.concatenate([ours, theirs]), (0.0, 1.0)).all())
    low, high = _bootstrap_interval(diffs, confidence=confidence, resamples=resamples, seed=seed)
    better, worse = int((diffs > 0).sum()), int((diffs < 0).sum())
    p_value = None
    if binary:  # McNemar's exact test: the discordant items split evenly under no difference
        discordant = better + worse
        p_value = 1.0 if discordant == 0 else float(stats.binomtest(better, discordant).pvalue)
    return PairedComparison(
        n=len(common),
        mean_candidate=float(ours.mean()),
        mean_reference=float(theirs.mean()),
        delta=float(diffs.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        test=MCNEMAR if binary else BOOTSTRAP,
        p_value=p_value,
        candidate_better=better,
        reference_better=worse,
        ties=int((diffs == 0).sum()),
        diff_sd=float(diffs.std(ddof=1)) if len(diffs) > 1 else math.nan,
    )


def _bootstrap_interval(
    diffs: NDArray[np.float64], *, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference; a constant difference is exact."""
    import numpy as np
    from scipy import stats

    if len(diffs) < 2 or float(np.ptp(diffs)) == 0.0:
        value = float(diffs.mean())
        return value, value
    result = stats.bootstrap(
        (diffs,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (math.nan, math.nan)
