"""``sweep judge A B [C ...]``: an LLM judges the two sides' held-out generations, pair by pair.

The outputs are the ones ``sweep compare`` reports (every held-out row, ``sweeps/serving/sides.py``). Each
row is put to the judge in both orders (``evals/judge.py``); verdicts are read strictly, and an
unreadable one is counted and listed, never dropped. Every question is cached per (judge,
messages) under the cache root, so a re-run asks nothing again.

The judge is any OpenAI-compatible endpoint (``judge.base_url``, ``judge.model``; the key from
the environment variable ``judge.api_key_env``, never logged), ``sweep serve`` included, or a
model in-process (no ``base_url``). The outcome (win/tie/loss with a Wilson interval, the sign
test, the judge's agreement with itself across the orders) is logged as a ``judge`` run in the
sweep's experiment, with every verdict and its rationale, and stored as the pair's judge
evidence (``sweeps/ab/evidence.py``) for the report and the promotion gate. Three or more sides:
every pair is judged, and Bradley-Terry strengths with bootstrap intervals rank them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evals import metric_keys as keys
from evals.judge import (
    JudgeItem,
    Rubric,
    RubricError,
    cache_key,
    combine,
    judge_messages,
    load_rubric,
    parse_verdict,
    rationale,
    self_agreement,
)
from evals.preference import PreferenceSummary, Strength, bradley_terry, summarize
from sweeps.ab.evidence import Evidence, save_evidence
from sweeps.config import ConfigError, JudgeConfig
from sweeps.console import Say
from sweeps.serving.sides import (
    ItemRow,
    PairedOutputs,
    experiment_name,
    home_config,
    paired_outputs,
    turns_text,
    utc,
)
from sweeps.tracking.state import write_json_atomic

if TYPE_CHECKING:
    from trainers.chat import ChatModel

UNREAD_SHOWN = 20  # unreadable verdicts kept with the evidence, for the report (all in MLflow)


@dataclass(frozen=True)
class Answer:
    """What the judge said, and how it ended: stop, length (cut at judge.max_tokens), or error
    (the endpoint refused this one question; the text says why). Errors are not cached."""

    text: str
    finish: str = "stop"


class Asker(Protocol):
    """Puts one question to the judge and returns its answer."""

    identity: str

    def ask(self, messages: list[dict[str, str]]) -> Answer: ...


# --------------------------------------------------------------------------- the judge
@dataclass(frozen=True)
class JudgeSettings:
    """A resolved judge: the config's fields with the rubric read."""

    config: JudgeConfig
    rubric: Rubric

    @property
    def identity(self) -> str:
        c = self.config
        return json.dumps(
            [c.base_url or "in-process", c.model, self.rubric.digest(), c.temperature, c.max_tokens]
        )

    def describe(self) -> str:
        where = self.config.base_url or "in-process"
        return f"{self.config.model} at {where}, rubric {', '.join(self.rubric.criteria)}"


def judge_settings(
    config: JudgeConfig | None, overrides: Mapping[str, object] | None = None
) -> JudgeSettings:
    """The sweep YAML's ``judge:`` with the command line's overrides on top (``judge:`` fields;
    None: that flag was not given)."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if config is None and "model" not in given:
        raise ConfigError(
            "no judge: add a judge: section to the sweep YAML ({base_url, model}) or pass "
            "--judge-model (and --judge-url for an endpoint, e.g. one sweep serve started)"
        )
    fields = config.model_dump() if config is not None else {}
    fields.update(given)
    resolved = JudgeConfig(**fields)
    try:
        loaded = load_rubric(Path(resolved.rubric) if resolved.rubric else None)
    except RubricError as exc:
        raise ConfigError(str(exc)) from None
    return JudgeSettings(resolved, loaded)


def sweep_judge_config(
    refs: Sequence[str], *, state_dir: Path, mlflow_uri: str
) -> JudgeConfig | None:
    """The ``judge:`` section of the sweep the first side from a sweep comes from (None if none)."""
    from sweeps.serving.sides import resolve_side

    for ref in refs:
        side = resolve_side(ref, state_dir=state_dir, mlflow_uri=mlflow_uri)
        if side.state is not None:
            section = home_config(side.state).get("judge")
            return JudgeConfig.model_validate(section) if section else None
    return None


class EndpointAsker:
    """An OpenAI-compatible chat-completions endpoint, through the ``openai`` client."""

    def __init__(self, settings: JudgeSettings) -> None:
        import os

        from openai import OpenAI

        c = settings.config
        assert c.base_url is not None
        key = os.environ.get(c.api_key_env, "")
        if not key and not _loopback(c.base_url):  # sweep serve without --api-key-env
            raise ConfigError(
                f"judge at {c.base_url}: the key variable {c.api_key_env} is not "
                f"set (export {c.api_key_env}=..., or judge.api_key_env)"
            )
        self.client = OpenAI(
            base_url=c.base_url, api_key=key or "unused", timeout=c.timeout_s, max_retries=2
        )
        self.config = c
        self.identity = settings.identity

    def check(self) -> None:
        """Before anything is scored: the endpoint answers, takes the key and serves the model
        (an endpoint without a model list is taken at its word)."""
        import openai

        where = f"judge endpoint {self.config.base_url}"
        try:
            served = [
                m.id for m in self.client.with_options(timeout=30, max_retries=0).models.list()
            ]
        except openai.APIConnectionError:
            raise ConfigError(
                f"{where} does not answer (is it running? sweep serve REF starts one)"
            ) from None
        except openai.AuthenticationError:
            raise ConfigError(f"{where} refused the key in {self.config.api_key_env}") from None
        except openai.APIStatusError:
            return
        if served and self.config.model not in served:
            raise ConfigError(
                f"{where} does not serve {self.config.model!r} "
                f"(it serves: {', '.join(served)}); set judge.model"
            )

    def ask(self, messages: list[dict[str, str]]) -> Answer:
        """One answer. A question the endpoint refuses (400: too long, say) is an error answer,
        counted as unreadable; an endpoint that fails (down, timing out, 429 or 5xx after the
        client's retries, a wrong key) stops the run in one line."""
        import openai

        where = f"judge endpoint {self.config.base_url}"
        try:
            reply = self.client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
            )
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            return Answer(f"error: {exc.message}", finish="error")
        except openai.APITimeoutError:
            raise ConfigError(
                f"{where}: no answer in {self.config.timeout_s:g} s (judge.timeout_s)"
            ) from None
        except openai.APIConnectionError:
            raise ConfigError(f"{where} stopped answering (is it running?)") from None
        except openai.APIStatusError as exc:
            raise ConfigError(f"{where}: HTTP {exc.status_code}: {exc.message}") from None
        if not reply.choices:
            return Answer("error: the endpoint returned no choice", finish="error")
        choice = reply.choices[0]
        return Answer(choice.message.content or "", finish=str(choice.finish_reason or "stop"))


class LocalAsker:
    """A model in this process: a base model (name or directory) or an adapter reference."""

    def __init__(self, settings: JudgeSettings, *, state_dir: Path, mlflow_uri: str) -> None:
        from trainers.chat import Sampling

        self.chat: ChatModel = local_judge_model(
            settings.config.model, state_dir=state_dir, mlflow_uri=mlflow_uri
        )
        self.name = self.chat.names[-1]  # the adapter when there is one, else the base
        c = settings.config
        self.sampling = Sampling(max_tokens=c.max_tokens, temperature=c.temperature)
        self.identity = json.dumps([settings.identity, self.chat.weights_identity()])

    def ask(self, messages: list[dict[str, str]]) -> Answer:
        done = self.chat.complete(messages, model=self.name, sampling=self.sampling)
        return Answer(done.text, finish=done.finish_reason)


def local_judge_model(model: str, *, state_dir: Path, mlflow_uri: str) -> ChatModel:
    from sweeps.serving.serve import Served, base_directory, resolve_served
    from trainers.chat import ChatModel

    try:
        served = resolve_served([f"judge={model}"], state_dir=state_dir, mlflow_uri=mlflow_uri)
    except ConfigError as not_adapter:  # a base model's name or directory, else the first error
        try:
            served = Served(base=base_directory(model), adapters={})
        except ConfigError:
            raise not_adapter from None
    return ChatModel(served.base, served.adapters, trust_remote_code=served.trust_remote_code)


def make_asker(settings: JudgeSettings, *, state_dir: Path, mlflow_uri: str) -> Asker:
    """The judge, checked: an endpoint must answer and serve the model; a local one is loaded."""
    if settings.config.base_url:
        asker = EndpointAsker(settings)
        asker.check()
        return asker
    return LocalAsker(settings, state_dir=state_dir, mlflow_uri=mlflow_uri)


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    from sweeps.serving.serve import LOOPBACK_HOSTS

    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


# --------------------------------------------------------------------------- judging rows
@dataclass(frozen=True)
class Verdict:
    """One row judged in both orders; ``outcome`` is A's view (None: a verdict was unreadable)."""

    id: str
    ab: str | None  # the verdict with A's output first
    ba: str | None  # with B's first
    outcome: int | None
    answer_ab: str
    answer_ba: str
    finish: tuple[str, str] = ("stop", "stop")  # how each answer ended: stop | length | error

    def row(self) -> dict[str, object]:
        return {
            **asdict(self),
            "rationale_ab": rationale(self.answer_ab),
            "rationale_ba": rationale(self.answer_ba),
        }


@dataclass(frozen=True)
class JudgeRun:
    verdicts: list[Verdict]
    asked: int  # questions put to the judge
    cached: int  # answers read back from the cache

    @property
    def outcomes(self) -> dict[str, int]:
        return {v.id: v.outcome for v in self.verdicts if v.outcome is not None}

    @property
    def unparsed(self) -> int:
        return sum(v.outcome is None for v in self.verdicts)

    def first_rate(self) -> tuple[float, int]:
        """Position bias: the share of readable, decisive verdicts that chose the answer shown
        first (about half for a judge without it), and how many there were."""
        decisive = [x for v in self.verdicts for x in (v.ab, v.ba) if x in ("first", "second")]
        if not decisive:
            return float("nan"), 0
        return decisive.count("first") / len(decisive), len(decisive)

    def ended(self, how: str) -> int:
        """Answers that ended ``how``: length (cut at judge.max_tokens) or error."""
        return sum(f == how for v in self.verdicts for f in v.finish)

    def agreement(self) -> tuple[float, int]:
        return self_agreement([(v.ab, v.ba) for v in self.verdicts])


def judge_items(
    items: Sequence[JudgeItem],
    *,
    asker: Asker,
    rubric: Rubric,
    parallel: int = 1,
    progress: Say = print,
) -> JudgeRun:
    """Ask the judge about every item in both orders (cached answers are not asked again)."""
    questions = {}
    for item in items:
        for a_first in (True, False):
            first, second = (item.a, item.b) if a_first else (item.b, item.a)
            questions[(item.id, a_first)] = judge_messages(
                item.prompt, first=first, second=second, reference=item.reference, rubric=rubric
            )
    answers, asked = _answers(questions, asker=asker, parallel=parallel, progress=progress)
    verdicts = []
    for item in items:
        ab, ba = answers[(item.id, True)], answers[(item.id, False)]
        pv_ab, pv_ba = parse_verdict(ab.text), parse_verdict(ba.text)
        verdicts.append(
            Verdict(
                item.id,
                pv_ab,
                pv_ba,
                combine(pv_ab, pv_ba),
                ab.text,
                ba.text,
                finish=(ab.finish, ba.finish),
            )
        )
    return JudgeRun(verdicts, asked=asked, cached=len(questions) - asked)


def _answers(
    questions: dict[tuple[str, bool], list[dict[str, str]]],
    *,
    asker: Asker,
    parallel: int,
    progress: Say,
) -> tuple[dict[tuple[str, bool], Answer], int]:
    from trainers.models import cache_root

    directory = cache_root() / "judge"
    paths = {q: directory / f"{cache_key(asker.identity, m)}.json" for q, m in questions.items()}
    answers = {q: _cached(p) for q, p in paths.items() if p.is_file()}
    missing = [q for q in questions if q not in answers]
    if not missing:
        return answers, 0
    progress(
        f"Asking the judge {len(missing)} question(s) "
        f"({len(answers)} answered before, from the cache) ..."
    )
    directory.mkdir(parents=True, exist_ok=True)

    def ask(q: tuple[str, bool]) -> Answer:
        answer = asker.ask(questions[q])
        if answer.finish != "error":  # a refused question is asked again next time
            write_json_atomic(paths[q], {"answer": answer.text, "finish": answer.finish})
        return answer

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        pending = {pool.submit(ask, q): q for q in missing}
        try:
            for future in as_completed(pending):
                answers[pending[future]] = future.result()
        except BaseException:  # the first failure stops the rest: nothing more is sent
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return answers, len(missing)


def _cached(path: Path) -> Answer:
    raw = json.loads(path.read_text())
    return Answer(str(raw["answer"]), finish=str(raw.get("finish", "stop")))


def judge_item(row: ItemRow) -> JudgeItem:
    """A report row as the judge sees it: the turns before the answer, as text."""
    return JudgeItem(row.id, turns_text(row.turns), row.reference, row.a, row.b)


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
