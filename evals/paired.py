"""Paired comparison of two models scored on the same items: the evidence behind promotion.

Both models are scored item by item on the same set (held-out rows, benchmark documents), so the
comparison is paired: each item's difference ``b - a``. Two questions are answered:

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
from typing import Any

MCNEMAR, BOOTSTRAP = "mcnemar", "bootstrap"


@dataclass(frozen=True)
class PairedComparison:
    """B against A on the items both were scored on; ``delta`` is mean(b) - mean(a)."""

    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    test: str  # mcnemar (0/1 scores) | bootstrap (graded scores)
    p_value: float | None  # McNemar's exact two-sided p; None for graded scores
    wins: int  # items where B scored higher
    losses: int  # items where B scored lower
    ties: int

    def significant(self, *, alpha: float | None = None) -> bool:
        """The difference is not chance (see :func:`is_significant`; alpha: 1 - confidence)."""
        return is_significant(
            p_value=self.p_value if self.test == MCNEMAR else None, ci_low=self.ci_low,
            ci_high=self.ci_high, alpha=alpha if alpha is not None else 1 - self.confidence,
        )  # fmt: skip

    def b_better(self, *, mode: str = "max") -> bool:
        """B is significantly better than A (``mode: min`` for scores where lower is better)."""
        improved = self.delta > 0 if mode == "max" else self.delta < 0
        return improved and self.significant()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def is_significant(
    *, p_value: float | None, ci_low: float, ci_high: float, alpha: float = 0.05
) -> bool:
    """McNemar's p below ``alpha`` for 0/1 scores; otherwise the interval excludes zero."""
    if p_value is not None:
        return p_value < alpha
    return ci_low > 0 or ci_high < 0


def compare_paired(
    a: Mapping[str, float], b: Mapping[str, float], *, confidence: float = 0.95,
    resamples: int = 10_000, seed: int = 0,
) -> PairedComparison:  # fmt: skip
    """Compare B with A on the items both have scores for (keyed by item id)."""
    import numpy as np
    from scipy import stats

    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two sets of per-item scores have no item in common")
    scores_a = np.array([float(a[i]) for i in common])
    scores_b = np.array([float(b[i]) for i in common])
    diffs = scores_b - scores_a
    binary = bool(np.isin(np.concatenate([scores_a, scores_b]), (0.0, 1.0)).all())
    low, high = _bootstrap_interval(diffs, confidence=confidence, resamples=resamples, seed=seed)
    p_value = None
    if binary:
        b_only, a_only = int((diffs > 0).sum()), int((diffs < 0).sum())
        discordant = a_only + b_only
        p_value = 1.0 if discordant == 0 else float(stats.binomtest(b_only, discordant).pvalue)
    return PairedComparison(
        n=len(common), mean_a=float(scores_a.mean()), mean_b=float(scores_b.mean()),
        delta=float(diffs.mean()), ci_low=low, ci_high=high, confidence=confidence,
        test=MCNEMAR if binary else BOOTSTRAP, p_value=p_value,
        wins=int((diffs > 0).sum()), losses=int((diffs < 0).sum()), ties=int((diffs == 0).sum()),
    )  # fmt: skip


def _bootstrap_interval(
    diffs: Any, *, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference; a constant difference is exact."""
    import numpy as np
    from scipy import stats

    if len(diffs) < 2 or float(np.ptp(diffs)) == 0.0:
        value = float(diffs.mean())
        return value, value
    result = stats.bootstrap(
        (diffs,), np.mean, confidence_level=confidence, n_resamples=resamples,
        method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (math.nan, math.nan)
