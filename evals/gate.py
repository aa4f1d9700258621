"""The promotion gate: promote only what is significantly better and regresses no guard.

The candidate is compared item by item with the incumbent (the registry's champion, or the base
model when there is none) on the same held-out rows: McNemar's exact test for 0/1 scores, else a
paired bootstrap 95% interval that must exclude zero (``evals.paired``). A guard benchmark that
regressed beyond its margin refuses promotion too (``evals.objective.guard_violations``, the
sweep's own guard). ``force`` overrides both, and its reason is kept with the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from evals.paired import MCNEMAR, PairedComparison, compare_paired

__all__ = ["GateDecision", "promotion_gate"]


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote, why not, and the evidence either way."""

    promote: bool
    metric: str
    against: str
    comparison: PairedComparison
    refusals: list[str] = field(default_factory=list)
    forced_reason: str | None = None

    def evidence(self) -> str:
        """One line: the difference, its interval and the test that judged it."""
        c = self.comparison
        test = f"McNemar p={c.p_value:.3g}" if c.test == MCNEMAR else "paired bootstrap"
        return (
            f"held-out {self.metric}: {c.mean_candidate:.4f} vs {self.against} "
            f"{c.mean_reference:.4f}, "
            f"delta {c.delta:+.4f}, {c.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], "
            f"{test}; {c.candidate_better} rows better, {c.reference_better} worse, "
            f"{c.ties} tied (n={c.n})"
        )


def promotion_gate(
    candidate: Mapping[str, float], incumbent: Mapping[str, float], *, metric: str,
    against: str, mode: str = "max", guard: Sequence[str] = (), force_reason: str | None = None,
) -> GateDecision:  # fmt: skip
    """Judge a candidate's per-item held-out scores against the incumbent's on the same items."""
    comparison = compare_paired(candidate, incumbent)
    refusals = []
    if not comparison.improves(mode=mode):
        refusals.append(f"not significantly better than {against} on held-out {metric}")
    refusals += [f"guard benchmark regressed: {line}" for line in guard]
    return GateDecision(
        promote=not refusals or force_reason is not None, metric=metric, against=against,
        comparison=comparison, refusals=refusals, forced_reason=force_reason,
    )  # fmt: skip
