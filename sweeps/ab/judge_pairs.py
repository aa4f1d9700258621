"""``sweep judge A B [C ...]``: an LLM judges the two sides' held-out generations, pair by pair.

The outputs are the ones ``sweep compare`` reports (every held-out row,
``sweeps/serving/sides.py``). Each row is put to the judge in both orders (``evals/judge.py``);
verdicts are read strictly, and an unreadable one is counted and listed, never dropped. Every
question is cached per (judge, messages) under the cache root, so a re-run asks nothing again.

The judge (``sweeps/ab/judge.py``) is any OpenAI-compatible endpoint, ``sweep serve`` included,
or a model in-process; the rows are asked in ``sweeps/ab/judge_verdicts.py``. The outcome
(win/tie/loss with a Wilson interval, the sign test, the judge's agreement with itself across the
orders) is logged as a ``judge`` run in the sweep's experiment, with every verdict and its
rationale, and stored as the pair's judge evidence (``sweeps/ab/evidence.py``) for the report and
the promotion gate. Three or more sides: every pair is judged, and Bradley-Terry strengths with
bootstrap intervals rank them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from evals import metric_keys as keys
from evals.preference import PreferenceSummary, Strength, bradley_terry, summarize
from sweeps.ab.evidence import Evidence, save_evidence
from sweeps.ab.judge import Asker, JudgeSettings, make_asker
from sweeps.ab.judge_verdicts import JudgeRun, judge_item, judge_items
from sweeps.config import ConfigError
from sweeps.console import Say
from sweeps.serving.sides import PairedOutputs, experiment_name, paired_outputs, utc

UNREAD_SHOWN = 20  # unreadable verdicts kept with the evidence, for the report (all in MLflow)


# --------------------------------------------------------------------------- a pair, logged
@dataclass(frozen=True)
class JudgeResult:
    a: str
    b: str
    summary: PreferenceSummary
    run: JudgeRun
    judge: str
    run_id: str
    evidence: Path

    def lines(self) -> list[str]:
        agreement, rows = self.run.agreement()  # the judge's agreement with itself
        agree = (
            "no row with both verdicts readable"
            if math.isnan(agreement)
            else f"{agreement:.0%} of {rows} rows"
        )
        first, decisive = self.run.first_rate()
        lines = [
            f"judge ({self.judge}): A ({self.a}) vs B ({self.b}): {self.summary.describe()}",
            f"  self-agreement across the two orders: {agree}; unreadable verdicts: "
            f"{self.run.unparsed}; asked {self.run.asked}, from the cache {self.run.cached}",
        ]
        if decisive:
            lines.append(
                f"  position bias: {first:.0%} of {decisive} decisive verdicts chose the "
                "answer shown first (about 50% without it)"
            )
        cut, refused = self.run.ended("length"), self.run.ended("error")
        if cut:
            lines.append(
                f"  {cut} answer(s) reached judge.max_tokens before a verdict line: raise it"
            )
        if refused:
            lines.append(
                f"  {refused} question(s) refused by the endpoint (the verdicts in "
                "MLflow say why); they are asked again next time"
            )
        return [*lines, f"  MLflow run {self.run_id}; evidence {self.evidence}"]


def judge_pair(
    a: str,
    b: str,
    *,
    state_dir: Path,
    mlflow_uri: str,
    settings: JudgeSettings,
    asker: Asker | None = None,
    progress: Say = print,
    pair: PairedOutputs | None = None,
) -> JudgeResult:
    """Judge A against B on the held-out rows, log the verdicts and store the evidence."""
    pair = pair or paired_outputs(
        a, b, state_dir=state_dir, mlflow_uri=mlflow_uri, progress=progress
    )
    asker = asker or make_asker(settings, state_dir=state_dir, mlflow_uri=mlflow_uri)
    return judge_paired(
        pair, mlflow_uri=mlflow_uri, settings=settings, asker=asker, progress=progress
    )


def judge_paired(
    pair: PairedOutputs,
    *,
    mlflow_uri: str,
    settings: JudgeSettings,
    asker: Asker,
    progress: Say = print,
) -> JudgeResult:
    """:func:`judge_pair` on outputs already paired, by a judge already made."""
    a, b = pair.a.ref, pair.b.ref
    rows = pair.items[: settings.config.rows] if settings.config.rows else pair.items
    run = judge_items(
        [judge_item(r) for r in rows],
        asker=asker,
        rubric=settings.rubric,
        parallel=settings.config.parallel,
        progress=progress,
    )
    summary = summarize(run.outcomes, unparsed=run.unparsed)
    agreement, agreement_rows = run.agreement()
    run_id = log_judge_run(
        pair, run, summary=summary, settings=settings, mlflow_uri=mlflow_uri, agreement=agreement
    )
    unreadable = [
        {"id": v.id, "answers": [v.answer_ab, v.answer_ba]}
        for v in run.verdicts
        if v.outcome is None
    ][:UNREAD_SHOWN]
    first_rate, decisive = run.first_rate()
    details = {
        "self_agreement": agreement,
        "agreement_rows": agreement_rows,
        "asked": run.asked,
        "cached": run.cached,
        "rows": len(rows),
        "of_rows": len(pair.items),
        "cut": run.ended("length"),
        "refused": run.ended("error"),
        "first_rate": first_rate,
        "decisive": decisive,
        "unreadable": unreadable,
    }
    evidence = Evidence(
        "judge", a, b, run.outcomes, run.unparsed, settings.describe(), utc(None), run_id, details
    )
    path = save_evidence(pair.home, pair.a, pair.b, evidence)
    return JudgeResult(a, b, summary, run, settings.describe(), run_id, path)


def log_judge_run(
    pair: PairedOutputs,
    run: JudgeRun,
    *,
    summary: PreferenceSummary,
    settings: JudgeSettings,
    mlflow_uri: str,
    agreement: float,
) -> str:
    """A ``judge`` run in the sweep's experiment: the outcome, and every verdict's rationale."""
    from sweeps.tracking.mlflow_facade import SweepTracker

    metrics = summary.as_metrics(keys.JUDGE)
    metrics.update({keys.JUDGE_ASKED: run.asked, keys.JUDGE_CACHED: run.cached})
    if not math.isnan(agreement):
        metrics[keys.JUDGE_SELF_AGREEMENT] = agreement
    rows = [v.row() for v in run.verdicts]
    return SweepTracker(mlflow_uri, experiment_name(pair.home)).log_run(
        f"judge {pair.a.label} vs {pair.b.label}"[:250],
        params={
            "a": pair.a.label,
            "b": pair.b.label,
            "judge_model": settings.config.model,
            "judge_url": settings.config.base_url or "in-process",
            "rubric": ", ".join(settings.rubric.criteria),
            "rows": len(run.verdicts),
        },
        metrics=metrics,
        tags={"lora_sweep.kind": "judge", "lora_sweep.sweep": pair.home.name},
        artifacts={
            "judge/verdicts.jsonl": "".join(json.dumps(row) + "\n" for row in rows),
            "judge/rubric.json": settings.rubric.model_dump_json(indent=2),
        },
        tables={"judge/verdicts_table.json": rows},
    )


# --------------------------------------------------------------------------- more than two
@dataclass(frozen=True)
class Tournament:
    pairs: list[JudgeResult]
    strengths: list[Strength] = field(default_factory=list)  # Bradley-Terry, three sides or more


def check_distinct(refs: Sequence[str], *, state_dir: Path, mlflow_uri: str) -> None:
    """Two names for the same weights (champion and the trial it came from) would be judged
    against themselves, and ranked as two models: refused before anything is asked."""
    from sweeps.serving.sides import resolve_side, side_digest

    seen: dict[str, str] = {}
    for ref in refs:
        digest = side_digest(resolve_side(ref, state_dir=state_dir, mlflow_uri=mlflow_uri))
        if digest in seen:
            raise ConfigError(f"{seen[digest]} and {ref} are the same weights; name each once")
        seen[digest] = ref


def judge_all(
    refs: Sequence[str],
    *,
    state_dir: Path,
    mlflow_uri: str,
    settings: JudgeSettings,
    progress: Say = print,
) -> Tournament:
    """Every pair of ``refs`` judged (the first as A); Bradley-Terry when there are 3+."""
    if len(refs) < 2 or len(set(refs)) < len(refs):
        raise ConfigError("sweep judge needs two or more different references: A B [C ...]")
    check_distinct(refs, state_dir=state_dir, mlflow_uri=mlflow_uri)
    asker = make_asker(settings, state_dir=state_dir, mlflow_uri=mlflow_uri)
    results = [
        judge_pair(
            a,
            b,
            state_dir=state_dir,
            mlflow_uri=mlflow_uri,
            settings=settings,
            asker=asker,
            progress=progress,
        )
        for a, b in combinations(refs, 2)
    ]
    if len(refs) < 3:
        return Tournament(results)
    matches = [(r.a, r.b, o) for r in results for o in r.run.outcomes.values()]
    return Tournament(results, bradley_terry(matches))
