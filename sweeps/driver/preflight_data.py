"""Preflight's checks of the data: every row of the data files read (saying how each file was
read), the held-out rows split off or read and described in one line (what ranks the trials), too
few rows to rank trials refused (data.allow_small), and the task metric chosen."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from sweeps.config import MIN_HELDOUT_ROWS, MIN_TRAIN_ROWS, SweepConfig, resolve_path
from sweeps.console import Say
from trainers.data import Example, choose_task_metric, read_data, split_heldout
from trainers.data_readers import DataError
from trainers.data_shapes import DataSettings


def check_data(
    config: SweepConfig, *, config_dir: Path, source: str = "<config>", progress: Say = print
) -> tuple[dict[str, Path], dict[str, list[Example]], str]:
    """Read every row of the data files (saying how each was read); return their paths, the
    examples and the task metric. Too few rows to rank trials are refused (data.allow_small)."""
    data = config.data
    settings = DataSettings(
        fmt=data.format,
        columns=dict(data.columns),
        system_prompt=data.system_prompt,
        instruction=data.instruction,
        label_field=data.label_field,
    )

    def load(path: Path) -> list[Example]:
        read = read_data(path, settings)
        for note in read.reading.notes:
            progress(note)
        return read.examples

    paths = {"train": resolve_path(data.train, config_dir=config_dir)}
    train = load(paths["train"])
    if data.heldout:
        paths["heldout"] = resolve_path(data.heldout, config_dir=config_dir)
        heldout = load(paths["heldout"])
    else:
        train, heldout = split_heldout(train, fraction=data.val_set_size, seed=data.split_seed)
    progress(
        describe_heldout(
            heldout, split=not data.heldout, generated=config.evaluation.generation_samples
        )
    )
    check_enough_rows(config, train=len(train), heldout=len(heldout), source=source)
    generating = [e for e in heldout if not e.is_text]
    task_metric = choose_task_metric(generating, data.task_metric) if generating else "none"
    if task_metric == "field_f1" and not all(
        e.reference.lstrip().startswith("{") for e in generating
    ):
        raise DataError(
            f"{paths.get('heldout', paths['train'])}: data.task_metric field_f1 needs "
            "JSON-object responses in the held-out rows"
        )
    return paths, {"train": train, "heldout": heldout}, task_metric


def describe_heldout(heldout: list[Example], *, split: bool, generated: int | None) -> str:
    """``Held-out: 20 rows (split off data.train, stratified by label: negative 7, ...);
    generated at each rung: 20`` (what ranks the trials, in one line)."""
    source = "split off data.train" if split else "data.heldout"
    labels = Counter(e.label for e in heldout if e.label is not None)
    if labels:
        shares = ", ".join(f"{label} {count}" for label, count in sorted(labels.items()))
        stratified = split and len(labels) > 1 and sum(labels.values()) == len(heldout)
        source += f", stratified by label: {shares}" if stratified else f"; labels: {shares}"
    generating = sum(not e.is_text for e in heldout)
    if not generating:
        return f"Held-out: {len(heldout)} rows ({source}); plain text: ranked by loss"
    count = min(generated or generating, generating)
    return (
        f"Held-out: {len(heldout)} rows ({source}); generated at each rung: {count}"
        f"{'' if count == generating else ' (evaluation.generation_samples)'}"
    )


def check_enough_rows(config: SweepConfig, *, train: int, heldout: int, source: str) -> None:
    """Fewer than MIN_TRAIN_ROWS training or MIN_HELDOUT_ROWS held-out rows are too few to rank
    trials (docs/data.md, "Too little data"): refused unless data.allow_small."""
    data = config.data
    if data.allow_small:
        return
    if train < MIN_TRAIN_ROWS:
        raise DataError(
            f"{source}: data.train: {train} training row{'' if train == 1 else 's'}"
            f"{'' if data.heldout else ' after the split'}; "
            f"a sweep needs at least {MIN_TRAIN_ROWS} to rank trials: add rows, or set "
            "data.allow_small: true to run anyway"
        )
    if heldout < MIN_HELDOUT_ROWS:
        fix = (
            "a larger data.heldout file, or a larger data.val_set_size (prepare: splits the "
            "held-out rows off data.train)"
            if config.prepare is not None
            else "a larger data.heldout file"
            if data.heldout
            else f"data.val_set_size: {min(0.5, math.ceil(100 * MIN_HELDOUT_ROWS / (train + heldout)) / 100):.2f} or a "
            "data.heldout file"
        )
        raise DataError(
            f"{source}: data.heldout: {heldout} held-out row{'' if heldout == 1 else 's'}; at "
            f"least {MIN_HELDOUT_ROWS} are "
            f"needed to tell trials apart: give {fix}, or set data.allow_small: true"
        )
