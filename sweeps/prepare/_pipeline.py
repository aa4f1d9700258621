"""The steps in order, the inputs they need (all loaded before anything is written), and the
writing of the prepared files, the report and the manifest."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.config import ConfigError
from sweeps.console import Say
from sweeps.prepare._contamination import NgramIndex, decontaminate, fields
from sweeps.prepare._options import PrepareOptions, PrepareResult
from sweeps.prepare._records import InputFile, Manifest, Record, StepResult

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class Loaded:
    records: list[Record]
    rejected: list[tuple[Record, str]]
    inputs: list[InputFile]
    heldout: list[Record] | None = None
    index: NgramIndex | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    benchmark_files: list[str] = field(default_factory=list)


def check_output(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir}: already exists and is not an empty directory")


# --------------------------------------------------------------------------- inputs
def load_inputs(options: PrepareOptions, *, progress: Say) -> Loaded:
    """Every input file, the held-out file, the benchmark sources and the tokenizer."""
    from sweeps.prepare._read import read_file
    from trainers.data import file_digest
    from trainers.data_shapes import DataSettings

    settings = DataSettings(
        fmt=options.format,
        columns=dict(options.columns),
        instruction=options.instruction,
        label_field=options.label_field,
    )
    records: list[Record] = []
    rejected: list[tuple[Record, str]] = []
    inputs: list[InputFile] = []
    for path in options.inputs:
        rows, bad, reading = read_file(path, settings)
        records += rows
        rejected += bad
        inputs.append(
            {
                "path": str(path),
                "sha256": file_digest(path),
                "format": reading.shape.name,
                "rows": len(rows) + len(bad),
                "rejected": len(bad),
            }
        )
        for note in reading.notes or (f"{path}: {len(rows)} examples ({reading.shape.name})",):
            progress(note)
        if bad:
            first, why = bad[0]
            progress(
                f"  {len(bad)} rows rejected, listed in the report (first: row {first.row}: {why})"
            )
    loaded = Loaded(records, rejected, inputs)
    if options.heldout is not None:
        held, bad, _ = read_file(options.heldout, settings)
        if bad:
            raise ConfigError(f"{options.heldout}: {bad[0][1]} (the held-out file must be clean)")
        loaded.heldout = held
    if options.decontaminate:
        loaded.index, loaded.benchmark_files = benchmark_index(options)
    if options.quality and options.measured_seq_len is not None:
        loaded.tokenizer = _tokenizer(options, progress=progress)
    return loaded


def benchmark_index(options: PrepareOptions) -> tuple[NgramIndex, list[str]]:
    """The n-grams of the benchmarks' evaluation files (held-out rows are added after the split)."""
    index = NgramIndex(n=options.ngram)
    files = benchmark_files(options.benchmarks, options.mirror)
    index.add_files(files)
    return index, [str(p) for p in files]


def benchmark_files(
    tasks: tuple[str, ...], mirror: Path | None, *, strict: bool = True
) -> list[Path]:
    """The mirror's evaluation files (not training splits) for each task; ``strict``: a task
    without one is an error."""
    from evals.benchmark_sources import MIRROR_FILES, MMLU_SPLITS

    if not tasks:
        return []
    if mirror is None or not mirror.is_dir():
        if not strict:
            return []
        raise ConfigError(
            f"decontamination against {', '.join(tasks)} needs their data: pass --mirror DIR (a "
            "directory of Hugging Face-schema jsonl files), or --no-decontaminate"
        )
    files = []
    for task in tasks:
        names = (
            list(MMLU_SPLITS.values())
            if task == "mmlu"
            else [
                n
                for split, ns in MIRROR_FILES.get(task, {}).items()
                if split != "train"
                for n in ns
            ]
        )
        found = [mirror / n for n in names if (mirror / n).is_file()]
        if not found and strict:
            raise ConfigError(f"benchmark {task}: no evaluation file of it in {mirror}")
        files += [f for f in found if f not in files]
    return files


def _tokenizer(options: PrepareOptions, *, progress: Say) -> PreTrainedTokenizerBase:
    from trainers.models import load_tokenizer, resolve_base_model

    if options.model is None:
        raise ConfigError("--max-seq-len needs --model (its tokenizer measures the rows)")
    return load_tokenizer(resolve_base_model(options.model, progress=progress).path)


# --------------------------------------------------------------------------- steps
def run_steps(options: PrepareOptions, loaded: Loaded, *, progress: Say) -> PrepareResult:
    from sweeps.prepare import _clean, _dedup, _pii, _quality

    records, steps = loaded.records, []
    read = StepResult(
        "read",
        rows_in=len(records) + len(loaded.rejected),
        rows_out=len(records),
        removed=list(loaded.rejected),
    )
    read.count("rejected rows", len(loaded.rejected))
    steps.append(read)
    plan = [
        (
            options.clean,
            lambda r: _clean.clean(r, speaker_tags=options.speaker_tags, fillers=options.fillers),
            "clean",
        ),
        (options.redact, lambda r: _pii.redact(r, kinds=options.pii_kinds), "redact"),
        (options.dedup, _dedup.exact, "dedup_exact"),
        (
            options.dedup and options.near_dedup,
            lambda r: _dedup.near(r, threshold=options.near_threshold),
            "dedup_near",
        ),
        (
            options.quality,
            lambda r: _quality.quality(
                r,
                min_response_chars=options.min_response_chars,
                max_seq_len=options.measured_seq_len,
                tokenizer=loaded.tokenizer,
                template=options.template,
                drop=options.drop_flagged,
            ),
            "quality",
        ),
    ]
    for enabled, step, name in plan:
        if not enabled:
            steps.append(
                StepResult(name, enabled=False, rows_in=len(records), rows_out=len(records))
            )
            continue
        started = time.perf_counter()
        records, result = step(records)
        result.seconds = time.perf_counter() - started
        progress(describe_step(result))
        steps.append(result)
    check_rows_left(steps, records)
    started = time.perf_counter()
    train, heldout, steps_tail = split_and_decontaminate(options, loaded, records)
    steps_tail[-1].seconds = time.perf_counter() - started
    for done in steps_tail:
        if done.enabled:
            progress(describe_step(done))
    steps += steps_tail
    check_rows_left(steps, train)
    return PrepareResult(options.out_dir, steps, loaded.rejected, train, heldout, {})


def describe_step(step: StepResult) -> str:
    """``quality: 120 -> 117 rows; removed 3 (empty response: 2, ...) (0.1 s)``: every removal is
    counted on the console, not only in the report."""
    line = f"{step.name}: {step.rows_in} -> {step.rows_out} rows"
    if step.counts:
        line += "; " + ", ".join(f"{k}: {v}" for k, v in step.counts.items())
    if step.notes:
        line += "; " + "; ".join(step.notes)
    return f"{line} ({step.seconds:.1f} s)"


def check_rows_left(steps: list[StepResult], records: list[Record]) -> None:
    """No training row left is one line naming the step that removed the last of them."""
    if records:
        return
    emptied = next((s for s in steps if s.enabled and s.rows_in > 0 and s.rows_out == 0), None)
    if emptied is None:
        raise ConfigError("no training rows: the input files hold no examples")
    reasons = ", ".join(f"{k}: {v}" for k, v in emptied.counts.items()) or "see the report"
    switch = {
        "read": "fixing the rows (or --columns; data.columns in a sweep YAML)",
        "quality": "--keep-flagged or --no-quality (prepare: {drop_flagged: false} or "
        "{quality: false})",
        "dedup_exact": "--no-dedup (prepare: {dedup: false})",
        "dedup_near": "--no-near-dedup (prepare: {near_dedup: false})",
        "decontaminate": "--no-decontaminate (prepare: {decontaminate: false})",
    }.get(emptied.name, f"--no-{emptied.name}")
    raise ConfigError(
        f"no training row survived: step {emptied.name} removed all {emptied.rows_in} "
        f"({reasons}); {switch} keeps them"
    )


def split_and_decontaminate(
    options: PrepareOptions, loaded: Loaded, records: list[Record]
) -> tuple[list[Record], list[Record], list[StepResult]]:
    """Split (unless a held-out file was given), then drop training rows that share an n-gram
    with a held-out row or a benchmark document."""
    from sweeps.prepare._split import split

    if loaded.heldout is not None:
        train, heldout = records, loaded.heldout
        step = StepResult(
            "split",
            enabled=False,
            rows_in=len(records),
            rows_out=len(records),
            counts={"train": len(train), "heldout (given)": len(heldout)},
        )
    else:
        train, heldout, step = split(records, fraction=options.heldout_fraction, seed=options.seed)
    if loaded.index is None:
        skipped = StepResult(
            "decontaminate", enabled=False, rows_in=len(train), rows_out=len(train)
        )
        return train, heldout, [step, skipped]
    for record in heldout:
        for text in fields(record):
            loaded.index.add(text, f"held-out {record.where}")
    train, contamination = decontaminate(train, loaded.index)
    return train, heldout, [step, contamination]


# --------------------------------------------------------------------------- outputs
def write_outputs(
    options: PrepareOptions, loaded: Loaded, result: PrepareResult, *, progress: Say
) -> None:
    """train.jsonl, heldout.jsonl, removed.jsonl (every removed row and why), report.html,
    report.md, lengths.png and manifest.json: all or nothing."""
    from sweeps.prepare._report import render_report

    out_dir = options.out_dir.expanduser().resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        files = {"train.jsonl": result.train, "heldout.jsonl": result.heldout}
        for name, rows in files.items():
            (staging / name).write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
        removed = [
            {
                "step": step.name,
                "source": r.source,
                "row": r.row,
                "reason": why,
                "text": " | ".join(r.texts())[:1000],
            }
            for step in result.steps
            for r, why in step.removed
        ]
        (staging / "removed.jsonl").write_text("".join(json.dumps(x) + "\n" for x in removed))
        result.manifest = manifest(options, loaded, result, staging)
        (staging / "manifest.json").write_text(json.dumps(result.manifest, indent=2))
        prepared = result.train + (
            result.heldout if loaded.heldout is None else []
        )  # not a given file
        html, markdown, png = render_report(
            result, options=options, before=loaded.records, after=prepared
        )
        (staging / "report.html").write_text(html)
        (staging / "report.md").write_text(markdown)
        (staging / "lengths.png").write_bytes(png)
        if out_dir.exists():
            out_dir.rmdir()  # empty: checked before reading
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out_dir = out_dir
    progress(
        f"Wrote {out_dir}: {len(result.train)} train, {len(result.heldout)} held-out rows; "
        f"report {out_dir / 'report.html'}"
    )


def manifest(
    options: PrepareOptions, loaded: Loaded, result: PrepareResult, staging: Path
) -> Manifest:
    from trainers.data import file_digest

    return {
        "inputs": loaded.inputs,
        "benchmark_files": loaded.benchmark_files,
        "outputs": {
            name: {"sha256": file_digest(staging / name), "rows": len(rows)}
            for name, rows in (("train.jsonl", result.train), ("heldout.jsonl", result.heldout))
        },
        "steps": [
            {
                "name": s.name,
                "enabled": s.enabled,
                "rows_in": s.rows_in,
                "rows_out": s.rows_out,
                "removed": len(s.removed),
                "changed": len(s.changed),
                "counts": s.counts,
                "seconds": round(s.seconds, 3),
            }
            for s in result.steps
        ],
        "settings": options.model_dump(mode="json"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
