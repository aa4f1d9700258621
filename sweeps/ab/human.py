"""``sweep human export A B`` and ``sweep human import OUT_DIR``: blind pairwise rating by people.

Export scores both sides on every held-out row (:func:`sweeps.serving.sides.paired_outputs`, cached) and
writes, under ``OUT_DIR/rater/``, a blind and randomised set of pairs for raters: rows shuffled,
random pair ids, each pair's left and right drawn at random (half the pairs show A on the left),
and nothing that tells the sides apart (no references, labels, scores, row ids or paths). The same
pairs come as CSV, JSONL, Label Studio tasks with their labelling config, and an Argilla snippet,
with a README for the raters. Which side is which is kept apart in ``OUT_DIR/key.json``.

Import reads the ratings put back under ``OUT_DIR/ratings/`` (the filled CSV or JSONL, or Label
Studio's JSON export), unblinds them with the key, takes each pair's majority (a split is a tie),
and summarises A against B as ``evals.preference`` does for the LLM judge: win/tie/loss, the
Wilson interval of the win rate, the sign test, with the agreement between raters and with the
judge (Cohen's kappa). The result is stored as the pair's ``human`` evidence
(``sweeps/ab/evidence.py``), logged as a ``human`` run in the sweep's experiment, and written to
``OUT_DIR/results.json``.
"""

from __future__ import annotations

import csv
import json
import math
import secrets
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
from sweeps.config import ConfigError
from sweeps.console import Say
from sweeps.serving.sides import (
    ItemRow,
    PairedOutputs,
    Side,
    check_comparable,
    experiment_name,
    pair_key,
    paired_outputs,
    resolve_side,
    turns_text,
    utc,
)
from sweeps.tracking.state import SweepState, write_json_atomic

RATER_DIR, RATINGS_DIR = "rater", "ratings"
KEY_FILE, RESULTS_FILE = "key.json", "results.json"
CHOICES = ("left", "right", "tie")
COLUMNS = ("pair_id", "prompt", "reference", "left", "right", "preference")
RATING_SUFFIXES = (".csv", ".jsonl", ".json")
KEY_VERSION = 1


# --------------------------------------------------------------------------- export
@dataclass(frozen=True)
class HumanExport:
    """What ``sweep human export`` wrote: the raters' files, and the key kept apart."""

    out_dir: Path
    key: Path
    rater_files: tuple[Path, ...]
    ratings_dir: Path  # where the filled ratings go back
    pairs: int
    identical: int  # pairs whose two outputs are the same text (a tie for any rater)


def export_pairs(
    a: str, b: str, *, state_dir: Path, mlflow_uri: str, out_dir: Path, progress: Say = print
) -> HumanExport:
    """Score A and B on every held-out row and write the blind pairs and their key."""
    refuse_existing_key(out_dir)
    pair = paired_outputs(a, b, state_dir=state_dir, mlflow_uri=mlflow_uri, progress=progress)
    if not pair.items:
        raise ConfigError(
            f"{a} and {b}: no held-out row was scored for both sides, so there is nothing to "
            f"rate; check the held-out set of sweep {pair.home.name}"
        )
    rows, entries = blind_pairs(pair.items, rng=secrets.SystemRandom(), limit=pair.max_new_tokens)
    cut = sum(item.a_cut + item.b_cut for item in pair.items)
    rater_files = write_rater_files(rows, out_dir / RATER_DIR, cut=cut, limit=pair.max_new_tokens)
    (out_dir / RATINGS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / KEY_FILE, key_data(pair, entries))
    identical = sum(item.a == item.b for item in pair.items)
    return HumanExport(out_dir, out_dir / KEY_FILE, rater_files, out_dir / RATINGS_DIR,
                       len(rows), identical)  # fmt: skip


def refuse_existing_key(out_dir: Path) -> None:
    if (out_dir / KEY_FILE).exists():
        raise ConfigError(
            f"{out_dir} already holds a {KEY_FILE} (an export raters may be using): export into "
            "a new directory, or import that one with `sweep human import`"
        )


def blind_pairs(
    items: list[ItemRow], *, rng: secrets.SystemRandom, limit: int = 0
) -> tuple[list[dict[str, str]], dict[str, dict[str, Any]]]:
    """The raters' rows (shuffled, random ids, left and right at random: half the pairs show
    A on the left) and the key's entry per pair id (its row id, and whether left is A). An
    answer that reached the ``limit`` of new tokens ends with ``CUT_MARK`` (either side's)."""
    order = list(items)
    rng.shuffle(order)
    left_is_a = [True, False] * (len(order) // 2) + [rng.random() < 0.5] * (len(order) % 2)
    rng.shuffle(left_is_a)
    rows, entries = [], {}
    for item, a_left in zip(order, left_is_a, strict=True):
        pair_id = secrets.token_hex(6)
        while pair_id in entries:
            pair_id = secrets.token_hex(6)
        a = item.a + CUT_MARK.format(limit=limit) if item.a_cut else item.a
        b = item.b + CUT_MARK.format(limit=limit) if item.b_cut else item.b
        left, right = (a, b) if a_left else (b, a)
        rows.append({"pair_id": pair_id, "prompt": turns_text(item.turns),
                     "reference": item.reference, "left": left, "right": right,
                     "preference": ""})  # fmt: skip
        entries[pair_id] = {"row": item.id, "left_is_a": a_left}
    return rows, entries


def key_data(pair: PairedOutputs, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """key.json: which side each pair's left is, and the two sides as named and resolved."""
    return {
        "version": KEY_VERSION, "sweep": pair.home.name, "created": utc(None),
        "pair_key": pair.key, "a": {"ref": pair.a.ref, "label": pair.a.label},
        "b": {"ref": pair.b.ref, "label": pair.b.label}, "pairs": entries,
    }  # fmt: skip


def write_rater_files(
    rows: list[dict[str, str]], rater_dir: Path, *, cut: int = 0, limit: int = 0
) -> tuple[Path, ...]:
    """pairs.csv, pairs.jsonl, Label Studio's tasks and config, the Argilla snippet, README
    (which says how many answers were cut at the ``limit`` of new tokens)."""
    rater_dir.mkdir(parents=True, exist_ok=True)
    with (rater_dir / "pairs.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    (rater_dir / "pairs.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    tasks = [{"data": {k: row[k] for k in COLUMNS if k != "preference"}} for row in rows]
    texts = {
        "label_studio_tasks.json": json.dumps(tasks, indent=2, ensure_ascii=False),
        "label_studio.xml": LABEL_STUDIO_XML, "argilla.py": ARGILLA_SNIPPET,
        "README.md": RATER_README.format(pairs=len(rows), cut=cut_words(cut, limit)),
    }  # fmt: skip
    for name, text in texts.items():
        (rater_dir / name).write_text(text, encoding="utf-8")
    return tuple(rater_dir / n for n in ("pairs.csv", "pairs.jsonl", *texts))


CUT_MARK = " [cut: stopped at the {limit}-token limit]"


def cut_words(cut: int, limit: int) -> str:
    """The README's paragraph on answers that reached the generation limit."""
    if not cut:
        return (
            f"No answer was cut: each one ended before the {limit}-token limit.\n" if limit else ""
        )
    return (
        f"{cut} answer{'s' if cut != 1 else ''} reached the limit of {limit} new tokens the "
        f"models were given and end with `{CUT_MARK.format(limit=limit).strip()}`: judge what "
        "they say, and count what is missing after the cut as missing.\n"
    )


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet shows as text: one that starts like a formula (``=``, ``+``, ``-``,
    ``@``) gets a leading apostrophe, so a model's answer runs nothing (CSV injection)."""
    return f"'{text}" if text.startswith(FORMULA_START) else text


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
    agreement = (rater_agreement(by_rater),
                 None if judge is None else judged(outcomes, judge.outcomes))  # fmt: skip
    details = {
        "ratings": len(ratings), "not_rated": not_rated, "raters": sorted(by_rater),
        "pairs": len(key["pairs"]), "rated_pairs": len(outcomes),
        "rater_agreement": None if agreement[0] is None else asdict(agreement[0]),
        "judge_agreement": None if agreement[1] is None else asdict(agreement[1]),
        "export": str(out_dir), "exported": key["created"],
    }  # fmt: skip
    unblinded = unblinded_rows(ratings, key["pairs"])
    run_id = log_human_run(key, home=home, summary=summary, details=details, ratings=unblinded,
                           mlflow_uri=mlflow_uri)  # fmt: skip
    evidence = Evidence(
        kind="human", a=key["a"]["ref"], b=key["b"]["ref"], outcomes=outcomes,
        unparsed=summary.unparsed, created=utc(None), run_id=run_id, details=details,
        source=f"human ratings in {out_dir / RATINGS_DIR} ({', '.join(sorted(by_rater))})",
    )  # fmt: skip
    path = save_evidence(home, side_a, side_b, evidence)
    results = out_dir / RESULTS_FILE
    write_json_atomic(results, {"a": key["a"], "b": key["b"], "sweep": home.name,
                                "summary": summary.to_json(), "describe": summary.describe(),
                                "outcomes": outcomes, "details": details, "run_id": run_id,
                                "evidence": str(path)})  # fmt: skip
    return HumanResult(summary, outcomes, len(ratings), not_rated, tuple(sorted(by_rater)),
                       agreement[0], agreement[1], run_id, path, results,
                       a=key["a"]["ref"], b=key["b"]["ref"])  # fmt: skip


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
    a, b = (resolve_side(key[s]["ref"], state_dir=state_dir, mlflow_uri=mlflow_uri)
            for s in ("a", "b"))  # fmt: skip
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
    files = sorted(p for p in ratings_dir.rglob("*") if p.is_file()
                   and p.suffix.lower() in RATING_SUFFIXES) if ratings_dir.is_dir() else []  # fmt: skip
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
        raise ConfigError(f"{path}: not UTF-8 text; save it as CSV UTF-8 (Excel: Save As, "
                          "CSV UTF-8) and import again") from None  # fmt: skip
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines(keepends=True))
        missing = {"pair_id", "preference"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{path}: no {' or '.join(sorted(missing))} column; fill the "
                              "preference column of the exported pairs.csv")  # fmt: skip
        for number, row in enumerate(reader, 2):  # as a spreadsheet numbers it: the header is 1
            yield f"{path} row {number}", dict(row)
    elif path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield f"{path} line {number}", json_object(line, where=f"{path} line {number}")
    else:
        loaded = json_value(text, where=str(path))
        if not isinstance(loaded, list):
            raise ConfigError(f"{path}: expected a list of tasks (Label Studio's JSON export) "
                              "or of rating rows")  # fmt: skip
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
        choices = [r.get("value", {}).get("choices") or [""] for r in annotation.get("result", [])
                   if r.get("from_name") == "preference"] or [[""]]  # fmt: skip
        choice = "" if annotation.get("was_cancelled") else choices[0][0]
        yield f"{where} annotation {number}", {"pair_id": pair_id, "preference": choice,
                                                "rater": annotator(annotation)}  # fmt: skip


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
            r.choice, left_is_a=bool(entry["left_is_a"]))  # fmt: skip
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
        rows.append({
            "row": entry["row"], "pair_id": r.pair_id, "rater": r.rater, "choice": r.choice,
            "left_is_a": entry["left_is_a"], "preferred": OUTCOMES[value], "source": r.where,
        })  # fmt: skip
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
    key: Mapping[str, Any], *, home: SweepState, summary: PreferenceSummary,
    details: Mapping[str, Any], ratings: list[dict[str, object]], mlflow_uri: str,
) -> str:  # fmt: skip
    """A ``human`` run in the sweep's experiment: the summary as metrics, the unblinded ratings
    and the results as artefacts."""
    from sweeps.tracking.mlflow_facade import SweepTracker

    tracker = SweepTracker(mlflow_uri, experiment_name(home))
    a, b = key["a"]["label"], key["b"]["label"]
    results = json.dumps({"summary": summary.to_json(), "details": details}, indent=2)
    return tracker.log_run(
        f"human {a} vs {b}"[:250],
        params={"a": a, "b": b, "pairs": details["pairs"], "raters": details["raters"],
                "export": details["export"]},
        metrics=human_metrics(summary, details),
        tags={"lora_sweep.kind": "human", "lora_sweep.sweep": home.name,
              "human.summary": summary.describe()},
        artifacts={"human/ratings.jsonl": "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                                  for row in ratings),
                   "human/results.json": results},
        tables={"human/ratings_table.json": ratings},
    )  # fmt: skip


# --------------------------------------------------------------------------- the raters' files
LABEL_STUDIO_XML = """\
<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Reference answer (what a good answer says)"/>
  <Text name="reference" value="$reference"/>
  <View style="display: flex; gap: 1em">
    <View style="flex: 1">
      <Header value="Left"/>
      <Text name="left" value="$left"/>
    </View>
    <View style="flex: 1">
      <Header value="Right"/>
      <Text name="right" value="$right"/>
    </View>
  </View>
  <Header value="Which answer is better for this prompt?"/>
  <Choices name="preference" toName="prompt" choice="single" showInline="true" required="true">
    <Choice value="left"/>
    <Choice value="right"/>
    <Choice value="tie"/>
  </Choices>
</View>
"""

ARGILLA_SNIPPET = '''\
"""Rate these pairs in Argilla 2.x (pip install "argilla>=2"), then write the ratings back.

    python argilla.py upload     # create the dataset and log pairs.jsonl as its records
    python argilla.py download   # write ratings.jsonl: put it in ratings/ beside key.json
"""

import json
import sys
from pathlib import Path

import argilla as rg

HERE = Path(__file__).parent
client = rg.Argilla()  # reads ARGILLA_API_URL and ARGILLA_API_KEY from the environment
NAME = "blind-pairs"  # the dataset's name in Argilla


def upload() -> None:
    settings = rg.Settings(
        guidelines=(HERE / "README.md").read_text(),
        fields=[rg.TextField(name=n) for n in ("prompt", "reference", "left", "right")],
        questions=[rg.LabelQuestion(name="preference", labels=["left", "right", "tie"])],
    )
    dataset = rg.Dataset(name=NAME, settings=settings, client=client)
    dataset.create()
    rows = [json.loads(line) for line in (HERE / "pairs.jsonl").read_text().splitlines()]
    dataset.records.log([
        rg.Record(id=row["pair_id"], fields={k: row[k] for k in ("prompt", "reference",
                                                                 "left", "right")})
        for row in rows
    ])


def download() -> None:
    dataset = client.datasets(name=NAME)
    with open(HERE / "ratings.jsonl", "w") as out:
        for record in dataset.records(with_responses=True):
            for response in record.responses["preference"]:
                out.write(json.dumps({"pair_id": record.id, "preference": response.value,
                                      "rater": str(response.user_id)}) + "\\n")


if __name__ == "__main__":
    {"upload": upload, "download": download}[sys.argv[1]]()
'''

RATER_README = """\
# Blind pairwise rating: {pairs} pairs

Each pair shows a prompt, a reference answer (what a good answer says), and two answers,
**left** and **right**, written by two different models. You are not told which model wrote
which: the pairs are shuffled and left and right are drawn at random for every pair. Do not try
to guess; judge the answers only.

## How to rate

For each pair, pick the answer that is better **for the prompt**:

- correct: it says what the reference says (it need not copy its wording), nothing false;
- specific: it answers this prompt, not a vaguer one, and leaves nothing asked for out;
- in the requested format and tone (JSON when JSON is asked for, the length and voice asked for).

Write `left` or `right` in the `preference` column, or `tie` when they are equally good (or
equally bad). Leave it empty to skip a pair: it counts as not rated. Change nothing else, and
keep `pair_id` as it is.

{cut}
## Where to rate

- **A spreadsheet**: open `pairs.csv`, fill the `preference` column, save it as CSV. Add a
  `rater` column with your name, or name the file after yourself (`ana.csv`).
- **A text editor**: fill `"preference"` in each line of `pairs.jsonl`.
- **Label Studio**: create a project, paste `label_studio.xml` under *Settings > Labeling
  Interface > Code*, import `label_studio_tasks.json`, rate, then *Export* as **JSON**.
- **Argilla 2.x**: `python argilla.py upload`, rate in Argilla, then `python argilla.py
  download` writes `ratings.jsonl`.

## Sending the ratings back

Give the filled file (or Label Studio's JSON export, or `ratings.jsonl`) to whoever exported the
pairs. They put it in the `ratings/` directory beside `key.json` (the key to which model is which,
kept away from raters) and run:

    sweep human import OUT_DIR

where `OUT_DIR` is the directory holding `key.json`. Several raters' files may go in `ratings/`
together; a pair rated by several people counts by majority (a split is a tie).
"""
