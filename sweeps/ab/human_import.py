"""``sweep human import OUT_DIR``: the people's blind ratings read back and unblinded.

Import reads the ratings put back under ``OUT_DIR/ratings/`` (the filled CSV or JSONL, or Label
Studio's JSON export), unblinds them with the key ``sweep human export`` wrote
(``sweeps/ab/human.py``), takes each pair's majority (a split is a tie), and summarises A
against B as ``evals.preference`` does for the LLM judge: win/tie/loss, the Wilson interval of
the win rate, the sign test, with the agreement between raters and with the judge (Cohen's
kappa). The result is stored as the pair's ``human`` evidence (``sweeps/ab/evidence.py``),
logged as a ``human`` run in the sweep's experiment, and written to ``OUT_DIR/results.json``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from evals import metric_keys as keys
from evals.preference import (
    A_BETTER,
    B_BETTER,
    OUTCOMES,
    TIE,
    PreferenceSummary,
    cohen_kappa,
    summarize,
)
from sweeps.ab.evidence import Evidence, load_evidence, save_evidence
from sweeps.ab.human import CHOICES, KEY_FILE, KEY_VERSION, RATINGS_DIR, RESULTS_FILE
from sweeps.config import ConfigError
from sweeps.serving.sides import (
    Side,
    check_comparable,
    experiment_name,
    pair_key,
    resolve_side,
    utc,
)
from sweeps.tracking.state import SweepState, write_json_atomic

RATING_SUFFIXES = (".csv", ".jsonl", ".json")


# --------------------------------------------------------------------------- import
@dataclass(frozen=True)
class Rating:
    """One rater's choice on one pair, as read (``where``: the file and its row)."""

    where: str
    pair_id: str
    choice: str  # left | right | tie
    rater: str


@dataclass(frozen=True)
class Agreement:
    """Cohen's kappa between two sets of outcomes on the ``pairs`` rated by both."""

    kappa: float | None
    pairs: int
    between: tuple[str, str]


@dataclass(frozen=True)
class HumanResult:
    """The raters' verdict on A against B, outcomes per held-out row id (+1: A preferred)."""

    summary: PreferenceSummary
    outcomes: dict[str, int]
    ratings: int
    not_rated: int  # rating rows left empty
    raters: tuple[str, ...]
    rater_agreement: Agreement | None  # the two raters with the most pairs in common
    judge_agreement: Agreement | None  # the raters' majority against the LLM judge
    run_id: str
    evidence: Path
    results: Path
    a: str = "A"  # the sides, by the refs the pairs were exported for
    b: str = "B"


def import_ratings(out_dir: Path, *, state_dir: Path, mlflow_uri: str) -> HumanResult:
    """Unblind the ratings under ``out_dir/ratings/``, summarise them, store and log them."""
    key = read_key(out_dir)
    ratings, not_rated = read_ratings(out_dir / RATINGS_DIR, pairs=key["pairs"])
    side_a, side_b, home = key_sides(key, state_dir=state_dir, mlflow_uri=mlflow_uri)
    by_rater = rater_outcomes(ratings, key["pairs"])
    outcomes = majority_outcomes(by_rater)
    summary = summarize(outcomes, unparsed=len(key["pairs"]) - len(outcomes))
    judge = load_evidence(home, side_a, side_b, "judge")
    agreement = (
        rater_agreement(by_rater),
        None if judge is None else judged(outcomes, judge.outcomes),
    )
    counts = {"ratings": len(ratings), "not_rated": not_rated, "rated_pairs": len(outcomes)}
    details = import_details(counts, by_rater=by_rater, key=key, agreement=agreement, out=out_dir)
    unblinded = unblinded_rows(ratings, key["pairs"])
    run_id = log_human_run(
        key, home=home, summary=summary, details=details, ratings=unblinded, mlflow_uri=mlflow_uri
    )
    evidence = Evidence(
        kind="human",
        a=key["a"]["ref"],
        b=key["b"]["ref"],
        outcomes=outcomes,
        unparsed=summary.unparsed,
        created=utc(None),
        run_id=run_id,
        details=details,
        source=f"human ratings in {out_dir / RATINGS_DIR} ({', '.join(sorted(by_rater))})",
    )
    path = save_evidence(home, side_a, side_b, evidence)
    results = out_dir / RESULTS_FILE
    record = {"a": key["a"], "b": key["b"], "sweep": home.name, "summary": summary.to_json()}
    record |= {"describe": summary.describe(), "outcomes": outcomes, "details": details}
    write_json_atomic(results, {**record, "run_id": run_id, "evidence": str(path)})
    return HumanResult(
        summary,
        outcomes,
        len(ratings),
        not_rated,
        tuple(sorted(by_rater)),
        agreement[0],
        agreement[1],
        run_id,
        path,
        results,
        a=key["a"]["ref"],
        b=key["b"]["ref"],
    )


def import_details(
    counts: dict[str, int],
    *,
    by_rater: Mapping[str, Mapping[str, int]],
    key: Mapping[str, Any],
    agreement: tuple[Agreement | None, Agreement | None],
    out: Path,
) -> dict[str, Any]:
    """What an import rests on, for the evidence and the run: counts, raters, agreements."""
    raters, judge = agreement
    return {
        "ratings": counts["ratings"],
        "not_rated": counts["not_rated"],
        "raters": sorted(by_rater),
        "pairs": len(key["pairs"]),
        "rated_pairs": counts["rated_pairs"],
        "rater_agreement": None if raters is None else asdict(raters),
        "judge_agreement": None if judge is None else asdict(judge),
        "export": str(out),
        "exported": key["created"],
    }


def read_key(out_dir: Path) -> dict[str, Any]:
    path = out_dir / KEY_FILE
    if not path.is_file():
        raise ConfigError(
            f"{out_dir} has no {KEY_FILE}: pass the directory `sweep human export` wrote "
            "(the one holding key.json, rater/ and ratings/)"
        )
    try:
        key: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error}); export again") from None
    if key.get("version") != KEY_VERSION or not isinstance(key.get("pairs"), dict):
        raise ConfigError(f"{path}: not a key written by `sweep human export`; export again")
    return key


def key_sides(
    key: Mapping[str, Any], *, state_dir: Path, mlflow_uri: str
) -> tuple[Side, Side, SweepState]:
    """The two sides resolved again from the key's references (no scoring); they must still
    be the weights that were exported."""
    a, b = (
        resolve_side(key[s]["ref"], state_dir=state_dir, mlflow_uri=mlflow_uri) for s in ("a", "b")
    )
    home = check_comparable(a, b)
    if pair_key(a, b) != key["pair_key"] or home.name != key["sweep"]:
        raise ConfigError(
            f"{a.ref} and {b.ref} no longer name the adapters exported on {key['created']} "
            f"(an adapter or a registry alias changed since): these ratings cannot be matched "
            "to them; export the pairs again and have them rated"
        )
    return a, b, home


# --------------------------------------------------------------------------- reading ratings
def read_ratings(ratings_dir: Path, *, pairs: Mapping[str, Any]) -> tuple[list[Rating], int]:
    """Every rating in the directory's CSV, JSONL and JSON files, checked against the key's
    pair ids; and how many rows were left unrated (an empty preference)."""
    files = (
        sorted(
            p for p in ratings_dir.rglob("*") if p.is_file() and p.suffix.lower() in RATING_SUFFIXES
        )
        if ratings_dir.is_dir()
        else []
    )
    found: dict[tuple[str, str], Rating] = {}  # a rater's last rating of a pair counts
    not_rated = 0
    for path in files:
        for where, fields in raw_ratings(path):
            rating = checked_rating(where, fields, pairs=pairs, rater=path.stem)
            if rating is None:
                not_rated += 1
            else:
                found[(rating.rater, rating.pair_id)] = rating
    if not found:
        raise ConfigError(
            f"no ratings in {ratings_dir}: put the raters' filled pairs.csv or pairs.jsonl "
            "(preference: left, right or tie), or Label Studio's JSON export, in that "
            "directory beside key.json, then import again"
        )
    return list(found.values()), not_rated


RawRating = dict[str, Any]  # pair_id, preference and (optionally) rater, as read


def raw_ratings(path: Path) -> Iterator[tuple[str, RawRating]]:
    """``(where, fields)`` of every rating row in one file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not UTF-8 text; save it as CSV UTF-8 (Excel: Save As, "
            "CSV UTF-8) and import again"
        ) from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        missing = {"pair_id", "preference"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(
                f"{path}: no {' or '.join(sorted(missing))} column; fill the "
                "preference column of the exported pairs.csv"
            )
        for number, row in enumerate(reader, 2):  # as a spreadsheet numbers it: the header is 1
            yield f"{path} row {number}", dict(row)
    elif path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield f"{path} line {number}", json_object(line, where=f"{path} line {number}")
    else:
        loaded = json_value(text, where=str(path))
        if not isinstance(loaded, list):
            raise ConfigError(
                f"{path}: expected a list of tasks (Label Studio's JSON export) or of rating rows"
            )
        for number, task in enumerate(loaded, 1):
            yield from task_ratings(task, where=f"{path} task {number}")


def task_ratings(task: object, *, where: str) -> Iterator[tuple[str, RawRating]]:
    """A Label Studio task's ratings: one per annotation (its ``completed_by`` the rater), a
    skipped (cancelled) one or a task without any being not rated. A plain rating row too."""
    if not isinstance(task, dict):
        raise ConfigError(f"{where}: expected an object, got {type(task).__name__}")
    if "data" not in task and "annotations" not in task:
        yield where, task
        return
    pair_id = (task.get("data") or {}).get("pair_id")
    annotations = task.get("annotations") or []
    if not annotations:
        yield where, {"pair_id": pair_id, "preference": ""}
    for number, annotation in enumerate(annotations, 1):
        choices = [
            r.get("value", {}).get("choices") or [""]
            for r in annotation.get("result", [])
            if r.get("from_name") == "preference"
        ] or [[""]]
        choice = "" if annotation.get("was_cancelled") else choices[0][0]
        yield (
            f"{where} annotation {number}",
            {"pair_id": pair_id, "preference": choice, "rater": annotator(annotation)},
        )


def annotator(annotation: Mapping[str, Any]) -> str:
    """Label Studio's ``completed_by``: a user id, or (older exports) the user as an object."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return "" if who is None else f"label-studio:{who}"


def checked_rating(
    where: str, fields: RawRating, *, pairs: Mapping[str, Any], rater: str
) -> Rating | None:
    """The rating in ``fields``, None when its preference is empty; anything else is refused."""
    pair_id = str(fields.get("pair_id") or "").strip()
    choice = str(fields.get("preference") or "").strip().lower()
    if not choice:
        return None
    if pair_id not in pairs:
        raise ConfigError(
            f"{where}: pair_id {pair_id!r} is not in this export's key.json; rate the pairs "
            "exported with it (is the file from another export?) and keep pair_id as exported"
        )
    if choice not in CHOICES:
        raise ConfigError(
            f"{where}: preference {fields.get('preference')!r} of pair {pair_id} is not left, "
            "right or tie; write one of those three (or leave it empty: not rated)"
        )
    who = str(fields.get("rater") or fields.get("annotator") or "").strip()
    return Rating(where, pair_id, choice, who or rater)


def json_value(text: str, *, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None


def json_object(text: str, *, where: str) -> RawRating:
    loaded = json_value(text, where=where)
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: expected an object with pair_id and preference")
    return loaded


# --------------------------------------------------------------------------- unblinding
def outcome(choice: str, *, left_is_a: bool) -> int:
    """A rater's left/right/tie as A's outcome: +1 A preferred, 0 a tie, -1 B preferred."""
    if choice == "tie":
        return TIE
    return A_BETTER if (choice == "left") == left_is_a else B_BETTER


def rater_outcomes(
    ratings: list[Rating], pairs: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, int]]:
    """``{rater: {held-out row id: outcome}}``."""
    by_rater: dict[str, dict[str, int]] = {}
    for r in ratings:
        entry = pairs[r.pair_id]
        by_rater.setdefault(r.rater, {})[entry["row"]] = outcome(
            r.choice, left_is_a=bool(entry["left_is_a"])
        )
    return by_rater


def majority_outcomes(by_rater: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Each rated row's majority outcome over its raters; a split vote is a tie."""
    votes: dict[str, list[int]] = {}
    for outcomes in by_rater.values():
        for row, value in outcomes.items():
            votes.setdefault(row, []).append(value)
    return {row: majority(values) for row, values in sorted(votes.items())}


def majority(values: list[int]) -> int:
    counted = Counter(values).most_common()
    if len(counted) > 1 and counted[0][1] == counted[1][1]:
        return TIE
    return counted[0][0]


def rater_agreement(by_rater: Mapping[str, Mapping[str, int]]) -> Agreement | None:
    """Cohen's kappa between the two raters with the most pairs in common (None: no pair was
    rated by two)."""
    best: tuple[int, str, str] | None = None
    for first, second in combinations(sorted(by_rater), 2):
        common = len(set(by_rater[first]) & set(by_rater[second]))
        if common and (best is None or common > best[0]):
            best = (common, first, second)
    if best is None:
        return None
    kappa, n = cohen_kappa(by_rater[best[1]], by_rater[best[2]])
    return Agreement(None if math.isnan(kappa) else kappa, n, (best[1], best[2]))


def judged(humans: Mapping[str, int], judge: Mapping[str, int]) -> Agreement | None:
    """Cohen's kappa between the raters' majority and the LLM judge, on rows both decided."""
    kappa, n = cohen_kappa(humans, judge)
    if n == 0:
        return None
    return Agreement(None if math.isnan(kappa) else kappa, n, ("raters", "judge"))


def unblinded_rows(
    ratings: list[Rating], pairs: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, object]]:
    """Every rating with its held-out row and the side it preferred (A, B or tie)."""
    rows: list[dict[str, object]] = []
    for r in sorted(ratings, key=lambda r: (pairs[r.pair_id]["row"], r.rater)):
        entry = pairs[r.pair_id]
        value = outcome(r.choice, left_is_a=bool(entry["left_is_a"]))
        rows.append(
            {
                "row": entry["row"],
                "pair_id": r.pair_id,
                "rater": r.rater,
                "choice": r.choice,
                "left_is_a": entry["left_is_a"],
                "preferred": OUTCOMES[value],
                "source": r.where,
            }
        )
    return rows


# --------------------------------------------------------------------------- logging
def human_metrics(summary: PreferenceSummary, details: Mapping[str, Any]) -> dict[str, float]:
    """``human/<stat>`` (NaN left out), ``human/ratings``, ``human/raters``, and
    ``human/judge_kappa`` when the judge's verdicts on the pair were compared."""
    metrics = summary.as_metrics(keys.HUMAN)
    metrics[keys.HUMAN_RATINGS] = float(details["ratings"])
    metrics[keys.HUMAN_RATERS] = float(len(details["raters"]))
    judge = details.get("judge_agreement")
    if judge and judge["kappa"] is not None:
        metrics[keys.HUMAN_JUDGE_KAPPA] = float(judge["kappa"])
    return metrics


def log_human_run(
    key: Mapping[str, Any],
    *,
    home: SweepState,
    summary: PreferenceSummary,
    details: Mapping[str, Any],
    ratings: list[dict[str, object]],
    mlflow_uri: str,
) -> str:
    """A ``human`` run in the sweep's experiment: the summary as metrics, the unblinded ratings
    and the results as artefacts."""
    from sweeps.tracking.mlflow_facade import SweepTracker

    tracker = SweepTracker(mlflow_uri, experiment_name(home))
    a, b = key["a"]["label"], key["b"]["label"]
    results = json.dumps({"summary": summary.to_json(), "details": details}, indent=2)
    return tracker.log_run(
        f"human {a} vs {b}"[:250],
        params={
            "a": a,
            "b": b,
            "pairs": details["pairs"],
            "raters": details["raters"],
            "export": details["export"],
        },
        metrics=human_metrics(summary, details),
        tags={
            "lora_sweep.kind": "human",
            "lora_sweep.sweep": home.name,
            "human.summary": summary.describe(),
        },
        artifacts={
            "human/ratings.jsonl": "".join(
                json.dumps(row, ensure_ascii=False) + "\n" for row in ratings
            ),
            "human/results.json": results,
        },
        tables={"human/ratings_table.json": ratings},
    )
