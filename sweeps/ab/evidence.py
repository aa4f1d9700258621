"""Judge and human evidence about a pair of adapters, kept with the sweep whose held-out set it
was gathered on: ``<sweep>/evidence/<pair key>/<kind>.json``.

The pair key is both sides' weights in order (``sweeps.serving.sides.pair_key``), so the champion and
the trial it was promoted from are one side, and evidence gathered as ``sweep judge trial base``
serves ``sweep promote`` of that trial and ``sweep compare champion base`` alike. Evidence stored
for (B, A) is read back for (A, B) with every outcome turned round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from evals.preference import PreferenceSummary, summarize
from sweeps.serving.sides import Side, pair_key
from sweeps.tracking.state import SweepState, write_json_atomic

PREFERENCE_KINDS = ("judge", "human")  # the evidence kept here (held-out scores are cached apart)
EVIDENCE_DIR = "evidence"


@dataclass(frozen=True)
class Evidence:
    """Outcomes per held-out row id (+1: A preferred), what gave them, and where it is logged."""

    kind: str  # judge | human
    a: str  # the references as named when it was gathered
    b: str
    outcomes: dict[str, int]
    unparsed: int
    source: str  # the judge model and rubric, or the ratings' directory and raters
    created: str
    run_id: str = ""  # the MLflow run holding the details (verdicts with rationale, ratings)
    details: Mapping[str, object] = field(default_factory=dict)  # agreement, raters, ...

    def summary(self) -> PreferenceSummary:
        return summarize(self.outcomes, unparsed=self.unparsed)

    def turned_round(self) -> Evidence:
        """The same evidence seen from B's side."""
        return Evidence(
            self.kind,
            self.b,
            self.a,
            {k: -v for k, v in self.outcomes.items()},
            self.unparsed,
            self.source,
            self.created,
            self.run_id,
            self.details,
        )


def evidence_path(home: SweepState, key: str, kind: str) -> Path:
    return home.path / EVIDENCE_DIR / key / f"{kind}.json"


HISTORY_KEPT = 20  # earlier runs kept in the file, newest first, for the record


def save_evidence(home: SweepState, a: Side, b: Side, evidence: Evidence) -> Path:
    """The pair's evidence of this kind, now; what it replaced goes to its ``history`` (the
    judge, rubric, rows and outcome of each earlier run), so a re-run with another judge until
    one passes leaves a trace."""
    path = evidence_path(home, pair_key(a, b), evidence.kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, object]] = []
    if path.is_file():
        earlier = json.loads(path.read_text())
        history = [
            {k: earlier.get(k) for k in ("a", "b", "source", "created", "run_id", "summary")},
            *earlier.get("history", []),
        ]
    write_json_atomic(
        path,
        {
            "kind": evidence.kind,
            "a": evidence.a,
            "b": evidence.b,
            "outcomes": evidence.outcomes,
            "unparsed": evidence.unparsed,
            "source": evidence.source,
            "created": evidence.created,
            "run_id": evidence.run_id,
            "details": evidence.details,
            "summary": evidence.summary().to_json(),
            "history": history[:HISTORY_KEPT],
        },
    )
    return path


def load_evidence(home: SweepState, a: Side, b: Side, kind: str) -> Evidence | None:
    """The stored evidence of ``kind`` on (A, B), or on (B, A) turned round; None if neither."""
    for key, flip in ((pair_key(a, b), False), (pair_key(b, a), True)):
        path = evidence_path(home, key, kind)
        if path.is_file():
            raw = json.loads(path.read_text())
            found = Evidence(
                kind=raw["kind"],
                a=raw["a"],
                b=raw["b"],
                outcomes={k: int(v) for k, v in raw["outcomes"].items()},
                unparsed=int(raw["unparsed"]),
                source=raw["source"],
                created=raw["created"],
                run_id=raw.get("run_id", ""),
                details=raw.get("details") or {},
            )
            return found.turned_round() if flip else found
    return None
