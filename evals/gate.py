"""The promotion gate: promote only what is significantly better and regresses no guard.

The candidate is compared item by item with the incumbent (the registry's champion, or the base
model when there is none) on the same held-out rows: McNemar's exact test for 0/1 scores, else a
paired bootstrap 95% interval that must exclude zero (``evals.paired``). A guard benchmark that
regressed beyond its margin refuses promotion too (``evals.objective.guard_violations``, the
sweep's own guard). ``force`` overrides both, and its reason is kept with the decision.

``require`` names the evidence that must each pass the same rule (``promote.require``):
``heldout`` (above), ``judge`` (the LLM judge's pairwise verdicts, both orders) and ``human``
(imported ratings). For the last two, a row's preference is the paired 0/1 score, so the rule is
McNemar's exact test on the rows where one side was preferred (the sign test), and the candidate
must be the one preferred (``evals.preference``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from evals.paired import MCNEMAR, PairedComparison, compare_paired
from evals.preference import PreferenceSummary

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
    require: list[str] = field(default_factory=lambda: ["heldout"])
    passed: dict[str, bool] = field(default_factory=dict)  # per required evidence
    preferences: dict[str, PreferenceSummary] = field(default_factory=dict)  # judge, human

    @property
    def carried_by(self) -> list[str]:
        """The required evidence that passed: what carried the decision."""
        return [kind for kind in self.require if self.passed.get(kind)]

    def evidence_lines(self) -> list[str]:
        """One line per evidence looked at: held-out first, then judge and human."""
        lines = [self.evidence()]
        for kind, summary in self.preferences.items():
            lines.append(f"{kind}: {summary.describe()}")
        return lines

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
    candidate: Mapping[str, float],
    incumbent: Mapping[str, float],
    *,
    metric: str,
    against: str,
    mode: str = "max",
    guard: Sequence[str] = (),
    force_reason: str | None = None,
    require: Sequence[str] = ("heldout",),
    preferences: Mapping[str, PreferenceSummary | str] = {},
) -> GateDecision:
    """Judge a candidate's per-item held-out scores against the incumbent's on the same items,
    and each other required evidence (``preferences``: its summary, or why there is none)."""
    comparison = compare_paired(candidate, incumbent)
    refusals, passed = [], {}
    if "heldout" in require:
        passed["heldout"] = comparison.improves(mode=mode)
        if not passed["heldout"]:
            refusals.append(f"not significantly better than {against} on held-out {metric}")
    for kind in (k for k in require if k != "heldout"):
        found = preferences.get(kind, f"no {kind} evidence")
        passed[kind] = isinstance(found, PreferenceSummary) and found.a_better
        if isinstance(found, str):
            refusals.append(f"{kind}: {found}")
        elif not passed[kind]:
            refusals.append(
                f"{kind}: not significantly preferred to {against} ({found.describe()})"
            )
    refusals += [f"guard benchmark regressed: {line}" for line in guard]
    summaries = {k: v for k, v in preferences.items() if isinstance(v, PreferenceSummary)}
    return GateDecision(
        promote=not refusals or force_reason is not None,
        refusals=refusals,
        forced_reason=force_reason,
        require=list(require),
        passed=passed,
        metric=metric,
        against=against,
        comparison=comparison,
        preferences=summaries,
    )
