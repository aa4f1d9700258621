"""Pairwise preferences (an LLM judge's, or human raters'): win/tie/loss, their intervals, and
agreement.

An item's outcome is A's view of one comparison: +1 (A preferred), 0 (a tie), -1 (B preferred).
The evidence is the same paired test the held-out gate uses (``evals.paired``): A's "preferred"
against B's "preferred" item by item, so McNemar's exact test on the items where one side was
preferred, which is the sign test on wins against losses. The win rate is wins / (wins + losses)
with a Wilson 95% interval; ties are reported beside it. More than two models: Bradley-Terry
strengths from every pairwise outcome (ties half a win each), with bootstrap intervals, as
Chatbot Arena reports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from evals.paired import PairedComparison, compare_paired

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

A_BETTER, TIE, B_BETTER = 1, 0, -1
OUTCOMES = {A_BETTER: "A", TIE: "tie", B_BETTER: "B"}


@dataclass(frozen=True)
class PreferenceSummary:
    """Outcomes over the decided items, and what could not be read (``unparsed``), never dropped."""

    n: int  # items with an outcome
    wins: int  # A preferred
    ties: int
    losses: int  # B preferred
    unparsed: int  # items without an outcome (a verdict or rating that could not be read)
    win_rate: float  # wins / (wins + losses); nan without a decisive item
    win_rate_low: float
    win_rate_high: float
    p_value: float  # the sign test (McNemar's exact test on the decisive items); 1 without any
    significant: bool
    confidence: float = 0.95

    @property
    def favours(self) -> str:
        """``A`` or ``B``, whichever was preferred on more rows; ``""`` for neither."""
        return "A" if self.wins > self.losses else "B" if self.losses > self.wins else ""

    @property
    def a_better(self) -> bool:
        """A is preferred, significantly (the gate's rule)."""
        return self.significant and self.favours == "A"

    def describe(self) -> str:
        rate = (
            "no decisive item"
            if math.isnan(self.win_rate)
            else f"win rate {self.win_rate:.2f} [{self.confidence:.0%} CI {self.win_rate_low:.2f}, "
            f"{self.win_rate_high:.2f}]"
        )
        verdict = "significant" if self.significant else "not significant"
        unread = f", {self.unparsed} without a verdict" if self.unparsed else ""
        return (
            f"A won {self.wins}, tied {self.ties}, lost {self.losses} of {self.n}{unread}; "
            f"{rate}; sign test p={self.p_value:.3g} ({verdict})"
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def as_metrics(self, source: str) -> dict[str, float]:
        """``judge/wins`` ... ``judge/p_value`` (``source``: judge or human); NaN left out."""
        from evals import metric_keys as keys

        values = (
            self.wins,
            self.ties,
            self.losses,
            self.unparsed,
            self.win_rate,
            self.win_rate_low,
            self.win_rate_high,
            self.p_value,
        )  # in PREFERENCE_STATS' order
        return {
            keys.preference(source, k): float(v)
            for k, v in zip(keys.PREFERENCE_STATS, values, strict=True)
            if not math.isnan(float(v))
        }


def summarize(
    outcomes: Mapping[str, int], *, unparsed: int = 0, confidence: float = 0.95
) -> PreferenceSummary:
    """Win/tie/loss over ``{item id: outcome}``, the Wilson interval and the sign test."""
    values = list(outcomes.values())
    wins, losses = values.count(A_BETTER), values.count(B_BETTER)
    ties = len(values) - wins - losses
    decisive = wins + losses
    low, high = wilson_interval(wins, decisive, confidence=confidence)
    comparison = preference_comparison(outcomes, confidence=confidence)
    p_value = (
        comparison.p_value if comparison is not None and comparison.p_value is not None else 1.0
    )
    significant = comparison is not None and comparison.significant()
    return PreferenceSummary(
        n=len(values),
        wins=wins,
        ties=ties,
        losses=losses,
        unparsed=unparsed,
        win_rate=wins / decisive if decisive else math.nan,
        win_rate_low=low,
        win_rate_high=high,
        p_value=p_value,
        significant=significant,
        confidence=confidence,
    )


def preference_comparison(
    outcomes: Mapping[str, int], *, confidence: float = 0.95
) -> PairedComparison | None:
    """The paired comparison the gate tests: 1 where A was preferred against 1 where B was."""
    if not outcomes:
        return None
    candidate = {item: float(o == A_BETTER) for item, o in outcomes.items()}
    reference = {item: float(o == B_BETTER) for item, o in outcomes.items()}
    return compare_paired(candidate, reference, confidence=confidence, resamples=2000)


def wilson_interval(
    successes: int, trials: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) without trials."""
    if trials == 0:
        return math.nan, math.nan
    from scipy import stats

    ci = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def cohen_kappa(first: Mapping[str, int], second: Mapping[str, int]) -> tuple[float, int]:
    """Cohen's kappa between two raters' outcomes on the items both rated, and how many; nan
    when both gave one and the same outcome throughout (kappa is undefined there)."""
    common = sorted(set(first) & set(second))
    if not common:
        return math.nan, 0
    from sklearn.metrics import cohen_kappa_score

    x, y = [first[i] for i in common], [second[i] for i in common]
    if len(set(x) | set(y)) == 1:  # one label everywhere: agreement, but not beyond chance
        return math.nan, len(common)
    return float(cohen_kappa_score(x, y, labels=[B_BETTER, TIE, A_BETTER])), len(common)


# --------------------------------------------------------------------------- Bradley-Terry
@dataclass(frozen=True)
class Strength:
    """A model's Bradley-Terry strength (log scale, the models' mean at 0), with its interval."""

    model: str
    score: float
    low: float
    high: float
    matches: int


Match = tuple[str, str, int]  # (model X, model Y, outcome from X's view)


def bradley_terry(
    matches: Sequence[Match], *, resamples: int = 200, confidence: float = 0.95, seed: int = 0
) -> list[Strength]:
    """Strengths of every model in ``matches``, strongest first, with bootstrap intervals over
    the matches (resampled with replacement)."""
    import numpy as np

    models = sorted({m for x, y, _ in matches for m in (x, y)})
    point = _bt_fit(matches, models)
    rng = np.random.default_rng(seed)
    draws = (
        np.array(
            [
                _bt_fit([matches[i] for i in rng.integers(0, len(matches), len(matches))], models)
                for _ in range(resamples)
            ]
        )
        if matches
        else np.zeros((0, len(models)))
    )
    tail = (1 - confidence) / 2 * 100
    counts = {m: sum(m in (x, y) for x, y, _ in matches) for m in models}
    out = []
    for index, model in enumerate(models):
        column = draws[:, index] if len(draws) else np.array([point[index]])
        out.append(
            Strength(
                model,
                float(point[index]),
                float(np.percentile(column, tail)),
                float(np.percentile(column, 100 - tail)),
                counts[model],
            )
        )
    return sorted(out, key=lambda s: -s.score)


def _bt_fit(
    matches: Sequence[Match], models: list[str], *, iterations: int = 200
) -> NDArray[np.float64]:
    """Hunter's MM iterations for Bradley-Terry, ties half a win to each side; log strengths
    centred at 0 (a model with no win is held at a small floor, not minus infinity)."""
    import numpy as np

    index = {m: i for i, m in enumerate(models)}
    k = len(models)
    wins = np.full(k, 0.0)
    games = np.zeros((k, k))
    for x, y, outcome in matches:
        i, j = index[x], index[y]
        games[i, j] += 1
        games[j, i] += 1
        wins[i] += (outcome + 1) / 2
        wins[j] += (1 - outcome) / 2
    wins = np.maximum(wins, 0.1)  # the floor: a strength stays finite
    strength = np.ones(k)
    for _ in range(iterations):
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        strength = np.where(denominator > 0, wins / np.maximum(denominator, 1e-12), strength)
        strength /= np.exp(np.log(strength).mean())
    return np.log(strength)
