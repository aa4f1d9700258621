"""Data preparation speed: 100k rows through the whole recipe, against same-run baselines.

    python perf/bench_prepare.py --rows 100000 [--mirror ../shared/benchmarks]

The corpus is synthetic and seeded: instruction/input/output rows of pseudo-words (Zipf-weighted
vocabulary), with 3% exact duplicates, 3% near-duplicates (one word changed) and 1% rows holding
an email or a phone number planted. ``sweep data prepare`` then runs every default step: clean,
redact, exact and MinHash near dedup, quality checks, a 10% seeded split, and 13-gram
decontamination against the held-out rows (and the mirror's ARC, MMLU and TruthfulQA files when
--mirror is given). Baselines, measured in the same run on the same file:

- the I/O floor: reading and checking every row (``trainers.data.load_examples``) and writing the
  rows back out as jsonl, which any tool pays;
- pandas ``drop_duplicates``, an exact-only dedup (what a grid tool's dedup amounts to).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402


def corpus(path: Path, *, rows: int, seed: int = 0) -> dict[str, int]:
    """Write the synthetic corpus; returns how many of each plant it holds."""
    rng = random.Random(seed)
    vocabulary = [
        f"{rng.choice('bcdfgklmnprstv')}{rng.choice('aeiou')}{i:x}" for i in range(30_000)
    ]
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocabulary))))

    def text(low: int, high: int) -> str:
        return " ".join(rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(low, high)))

    out, plants = [], {"exact": 0, "near": 0, "pii": 0}
    while len(out) < rows:
        roll = rng.random()
        if out and roll < 0.03:
            out.append(dict(rng.choice(out)))
            plants["exact"] += 1
            continue
        row = {"instruction": text(12, 20), "input": text(20, 40), "output": text(20, 40)}
        if out and roll < 0.06:
            source = rng.choice(out)
            words = source["input"].split()
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
            row = {**source, "input": " ".join(words)}
            plants["near"] += 1
        elif roll < 0.07:
            row["input"] += rng.choice([" mail j.doe@example.com", " call +1 415 555 0132"])
            plants["pii"] += 1
        out.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    plants["pii_rows"] = sum("j.doe@" in r["input"] or "415 555" in r["input"] for r in out)
    return plants  # pii_rows: rows holding a planted item, copies of planted rows included


def io_floor(source: Path, work: Path) -> float:
    from trainers.data import load_examples

    started = time.perf_counter()
    examples = load_examples(source)
    with (work / "floor.jsonl").open("w") as handle:
        for example in examples:
            handle.write(json.dumps({"messages": list(example.messages)}) + "\n")
    return time.perf_counter() - started


def pandas_exact(source: Path) -> tuple[float, int]:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_json(source, lines=True)
    kept = len(frame.drop_duplicates())
    return time.perf_counter() - started, kept


def ours(source: Path, work: Path, mirror: Path | None) -> tuple[float, dict[str, Any]]:
    from sweeps.prepare import PrepareOptions, prepare_data

    tasks = ("arc_challenge", "mmlu", "truthfulqa_mc2") if mirror else ()
    options = PrepareOptions(inputs=(source,), out_dir=work / "prepared", benchmarks=tasks,
                             mirror=mirror)  # fmt: skip
    started = time.perf_counter()
    result = prepare_data(options, progress=lambda line: print(f"  {line}", file=sys.stderr))
    return time.perf_counter() - started, result.manifest  # reading and writing included


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mirror", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        source = work / "raw.jsonl"
        plants = corpus(source, rows=args.rows)
        floor = io_floor(source, work)
        pandas_s, pandas_kept = pandas_exact(source)
        total, manifest = ours(source, work, args.mirror)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = {s["name"]: {"rows_in": s["rows_in"], "rows_out": s["rows_out"],
                         "removed": s["removed"], "changed": s["changed"],
                         "seconds": s["seconds"]}
             for s in manifest["steps"]}  # fmt: skip
    return emit({
        "settings": {"rows": args.rows, "mirror": bool(args.mirror),
                     "benchmark_files": [Path(f).name for f in manifest["benchmark_files"]]},
        "plants": plants, "steps": steps, "prepare_s": total, "io_floor_s": floor,
        "pandas_exact_dedup_s": pandas_s, "pandas_exact_kept": pandas_kept,
        "ratio_vs_io_floor": total / floor, "target_s": 120.0, "met": total <= 120.0,
    }, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
