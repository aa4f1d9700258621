"""The A/B report's preference evidence: the LLM judge's and the human raters' verdicts stored
for the pair, as sections with their notes (rows left out, position bias, agreement), the
evidence table (held-out, judge, human) a promotion's ``promote.require`` reads, and what the
gate would make of it, A over B."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from evals.preference import PreferenceSummary
from sweeps.ab.compare_report import (
    Delta,
    EvidenceRow,
    PreferenceSection,
    ReportContext,
    UnreadRow,
)
from sweeps.ab.evidence import PREFERENCE_KINDS, load_evidence
from sweeps.report_templates import clip
from sweeps.serving.sides import PairedOutputs, home_config

PREFERENCE_TITLES = {"judge": "LLM judge (pairwise, both orders)", "human": "Human raters (blind)"}
HOW_TO_GET = {
    "judge": "sweep compare {a} {b} --judge, or sweep judge {a} {b}",
    "human": "sweep human export {a} {b} --out DIR, have it rated, then sweep human import DIR",
}


def with_preferences(
    context: ReportContext, pair: PairedOutputs, *, errors_link: str | None
) -> ReportContext:
    """The report with the judge's and the raters' evidence stored for the pair, and the
    evidence table (held-out, judge, human) the gate's ``promote.require`` reads."""
    from dataclasses import replace

    sections = []
    for kind in PREFERENCE_KINDS:
        found = load_evidence(pair.home, pair.a, pair.b, kind)
        if found is not None:
            sections.append(
                preference_section(
                    kind,
                    found.summary(),
                    source=found.source,
                    details=found.details,
                    run_id=found.run_id,
                )
            )
    evidence = evidence_rows(context.heldout_paired, sections, refs=(pair.a.ref, pair.b.ref))
    require = (home_config(pair.home).get("promote") or {}).get("require") or ["heldout"]
    return replace(
        context,
        preferences=sections,
        errors_link=errors_link,
        evidence=evidence,
        gate=gate_line(evidence, require=list(require)),
    )


def gate_line(evidence: list[EvidenceRow], *, require: list[str]) -> str:
    """The promotion gate's rule applied to A over B: each required evidence must prefer A,
    significantly (sweeps/release/promote.py applies it to a candidate over the champion)."""
    failing = [
        row.kind
        for row in evidence
        if row.kind in require and not (row.significant and row.favours == "A")
    ]
    verdict = (
        "would pass"
        if not failing
        else f"would refuse (not significantly for A: {', '.join(failing)})"
    )
    return (
        f"If B were the champion, promoting A under this sweep's promote.require "
        f"({', '.join(require)}) {verdict}."
    )


def preference_section(
    kind: str, summary: PreferenceSummary, *, source: str, details: Mapping[str, Any], run_id: str
) -> PreferenceSection:
    notes = judge_notes(details) if kind == "judge" else human_notes(details)
    unread = [
        UnreadRow(r["id"], [clip(a, 300) for a in r.get("answers", [])])
        for r in details.get("unreadable", [])
    ]
    return PreferenceSection(
        kind,
        PREFERENCE_TITLES[kind],
        source,
        summary,
        summary.describe(),
        preference_verdict(summary),
        notes,
        unread,
        run_id,
    )


def judge_notes(details: Mapping[str, Any]) -> list[str]:
    """What to know about the judge's run: rows left out, answers cut, its biases."""
    notes = []
    if details.get("rows", 0) < details.get("of_rows", 0):
        notes.append(
            f"Only the first {details['rows']} of {details['of_rows']} held-out rows "
            "were judged (judge.rows)"
        )
    if details.get("cut"):
        notes.append(
            f"{details['cut']} answers reached the judge's max_tokens before a "
            "verdict line (judge.max_tokens)"
        )
    if details.get("decisive"):
        notes.append(
            f"Position bias: {details['first_rate']:.0%} of {details['decisive']} "
            "decisive verdicts chose the answer shown first (about 50% without it)"
        )
    if details.get("agreement_rows"):
        notes.append(
            f"The judge gave the same verdict in both orders on "
            f"{details['self_agreement']:.0%} of {details['agreement_rows']} rows "
            "(low agreement: position bias, and such a judge's wins cancel to ties)"
        )
    return notes


def human_notes(details: Mapping[str, Any]) -> list[str]:
    """The ratings behind the raters' verdict, and how far the raters (and the judge) agree."""
    raters = details.get("raters") or []
    notes = [
        f"{details.get('ratings', 0)} ratings by {len(raters)} rater(s); "
        f"{details.get('not_rated', 0)} left unrated"
    ]
    for name, who in (
        ("rater_agreement", "between raters"),
        ("judge_agreement", "humans vs the judge"),
    ):
        agreement = details.get(name) or {}
        if agreement.get("kappa") is not None:
            notes.append(
                f"Cohen's kappa {who}: {agreement['kappa']:.2f} on {agreement.get('pairs', 0)} rows"
            )
    return notes


def preference_verdict(summary: PreferenceSummary) -> str:
    if summary.n == 0:
        return "no verdict could be read"
    if not summary.significant:
        return "no significant preference"
    return f"{summary.favours} preferred"


def evidence_rows(
    heldout: Delta, sections: list[PreferenceSection], *, refs: tuple[str, str]
) -> list[EvidenceRow]:
    direction = "A better" if heldout.delta > 0 else "B better" if heldout.delta < 0 else "equal"
    rows = [
        EvidenceRow(
            "heldout",
            f"{direction} on {heldout.metric} ({heldout.delta:+.3f}, "
            f"{'significant' if heldout.significant else 'not significant'})",
            heldout.significant,
            direction.split()[0] if heldout.delta else "",
        )
    ]
    found = {s.kind: s for s in sections}
    for kind in PREFERENCE_KINDS:
        section = found.get(kind)
        if section is None:
            how = HOW_TO_GET[kind].format(a=shlex.quote(refs[0]), b=shlex.quote(refs[1]))
            rows.append(EvidenceRow(kind, f"not gathered: {how}", None))
        else:
            summary = section.summary
            rows.append(
                EvidenceRow(
                    kind,
                    f"{section.verdict}: {section.described}",
                    summary.significant,
                    summary.favours,
                )
            )
    return rows
