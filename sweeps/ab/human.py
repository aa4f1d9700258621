"""``sweep human export A B``: blind pairwise rating by people, the pairs written for raters.

Export scores both sides on every held-out row (:func:`sweeps.serving.sides.paired_outputs`, cached) and
writes, under ``OUT_DIR/rater/``, a blind and randomised set of pairs for raters: rows shuffled,
random pair ids, each pair's left and right drawn at random (half the pairs show A on the left),
and nothing that tells the sides apart (no references, labels, scores, row ids or paths). The same
pairs come as CSV, JSONL, Label Studio tasks with their labelling config, and an Argilla snippet,
with a README for the raters. Which side is which is kept apart in ``OUT_DIR/key.json``. This
module owns that directory's layout; ``sweep human import OUT_DIR`` reads the ratings back
(``sweeps/ab/human_import.py``).
"""

from __future__ import annotations

import csv
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.config import ConfigError
from sweeps.console import Say
from sweeps.serving.sides import (
    ItemRow,
    PairedOutputs,
    paired_outputs,
    turns_text,
    utc,
)
from sweeps.tracking.state import write_json_atomic

RATER_DIR, RATINGS_DIR = "rater", "ratings"
KEY_FILE, RESULTS_FILE = "key.json", "results.json"
CHOICES = ("left", "right", "tie")
COLUMNS = ("pair_id", "prompt", "reference", "left", "right", "preference")
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
    return HumanExport(
        out_dir, out_dir / KEY_FILE, rater_files, out_dir / RATINGS_DIR, len(rows), identical
    )


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
        rows.append(
            {
                "pair_id": pair_id,
                "prompt": turns_text(item.turns),
                "reference": item.reference,
                "left": left,
                "right": right,
                "preference": "",
            }
        )
        entries[pair_id] = {"row": item.id, "left_is_a": a_left}
    return rows, entries


def key_data(pair: PairedOutputs, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """key.json: which side each pair's left is, and the two sides as named and resolved."""
    return {
        "version": KEY_VERSION,
        "sweep": pair.home.name,
        "created": utc(None),
        "pair_key": pair.key,
        "a": {"ref": pair.a.ref, "label": pair.a.label},
        "b": {"ref": pair.b.ref, "label": pair.b.label},
        "pairs": entries,
    }


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
        "label_studio.xml": LABEL_STUDIO_XML,
        "argilla.py": ARGILLA_SNIPPET,
        "README.md": RATER_README.format(pairs=len(rows), cut=cut_words(cut, limit)),
    }
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
