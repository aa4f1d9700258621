"""``sweep init DATA``: a commented sweep YAML for a data file, sized to a time budget.

The data is read as launch reads it (its shape detected, every row checked); ``sequence_len``
candidates come from the training rows' token lengths under the model's own template; the search
space is sized to the budget by the same estimate ``sweep validate`` prints (a short timed trial
on the real model, scaled to the sweep). The YAML is then checked as ``sweep validate`` checks it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.config import MIN_HELDOUT_ROWS, MIN_TRAIN_ROWS, ConfigError

if TYPE_CHECKING:
    from sweeps.cli.dry_run import DryRun
    from sweeps.driver.estimate import SweepEstimate
    from trainers.data import Example

BUDGET = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+)s)?$")
MAX_TRIALS = 64
# The sweep is sized to this share of the budget: `sweep validate` times its own short trial, and
# a second timing on a busy 2-core machine differs by several percent (20 min became 21).
HEADROOM = 0.9
GENERATED_ROWS = 64  # held-out rows generated at each rung when there are more (all when fewer)


@dataclass(frozen=True)
class InitRequest:
    data: Path
    heldout: Path | None = None
    model: str = "smollm2-135m-instruct"
    budget: str = "30m"
    out: Path | None = None
    name: str | None = None
    instruction: str | None = None
    system_prompt: str | None = None


def parse_budget(text: str) -> float:
    """``30m``, ``2h``, ``1h30m``, ``90s`` as seconds."""
    match = BUDGET.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise ConfigError(f"--budget {text!r}: give a duration such as 30m, 2h, 1h30m or 90s")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


GENERIC_STEMS = {"train", "training", "data", "dataset", "raw", "input", "all", "full", "rows"}


def sweep_name(path: Path) -> str:
    """A safe sweep name from a file name: ``My Data (v2).jsonl`` -> ``my-data-v2``; a generic
    name (``data/notes/train.jsonl``) takes its directory's (``notes``)."""
    stem = path.stem.lower()
    if stem in GENERIC_STEMS and path.resolve().parent.name:
        stem = path.resolve().parent.name.lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._")
    return (name or "sweep")[:60]


def sequence_lengths(lengths: list[int], *, limit: int) -> list[int]:
    """Candidates from the rows' token lengths: the 90th percentile and the longest row, each
    rounded up to a multiple of 64 and capped at the model's context."""
    ordered = sorted(lengths)

    def at(q: float) -> int:
        index = min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)
        return min(limit, 64 * math.ceil(ordered[max(index, 0)] / 64))

    return sorted({at(0.9), at(1.0)})


def init_sweep(request: InitRequest, *, say: Callable[[str], None] = print) -> Path:
    """Write the sweep YAML for ``request.data`` and return its path."""
    from sweeps.config import load_config

    budget = parse_budget(request.budget)
    out = _out_path(request)
    facts = _data_facts(request, say=say)
    draft = out.with_name(f".{out.name}.draft")
    try:
        draft.write_text(render_yaml(request, facts, out=out, num_samples=8, epochs=(1, 2)))
        load_config(draft)
        num_samples, epochs, estimate = _sized_to_budget(draft, request, facts, budget, say=say)
    finally:
        draft.unlink(missing_ok=True)
    out.write_text(
        render_yaml(
            request, facts, out=out, num_samples=num_samples, epochs=epochs, estimate=estimate
        )
    )
    load_config(out)
    say(f"Wrote {out}: {num_samples} trials, estimated {estimate.lines()[-1].split(': ', 1)[1]}")
    say(f"  check it: sweep validate {out}\n  run it:   sweep launch {out}")
    return out


def _out_path(request: InitRequest) -> Path:
    from sweeps.config import check_safe_name

    name = (
        check_safe_name(request.name, what="--name") if request.name else sweep_name(request.data)
    )
    out = request.out or Path("search_spaces") / f"{name}.yaml"  # as --help and README say
    if out.exists():
        raise ConfigError(f"{out}: already exists; pass --out for another file, or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


@dataclass(frozen=True)
class DataFacts:
    name: str
    shape: str
    train_rows: int
    heldout_rows: int
    val_set_size: float | None
    task_metric: str
    sequence_len: list[int]
    lengths: str  # "p50 41, p90 58, max 77 tokens"
    target_modules: list[str]
    gpu: bool

    @property
    def generated(self) -> int:
        """Held-out rows generated at each rung: all of them up to GENERATED_ROWS (never fewer
        than the held-out floor that ranks trials, where there are that many)."""
        return min(self.heldout_rows, max(GENERATED_ROWS, MIN_HELDOUT_ROWS))


def _data_facts(request: InitRequest, *, say: Callable[[str], None]) -> DataFacts:
    """The data's shape and rows, the task metric, and sequence_len from its token lengths."""
    from trainers.data import choose_task_metric, read_data, split_heldout
    from trainers.data_shapes import FORMAT_ALIASES, DataSettings

    settings = DataSettings(instruction=request.instruction, system_prompt=request.system_prompt)
    train = read_data(request.data, settings)
    for note in train.reading.notes:
        say(note)
    examples, val = train.examples, None
    if request.heldout is not None:
        heldout = read_data(request.heldout, settings).examples
    else:
        # rounded up to 2 decimals: the YAML's fraction splits off at least the floor
        val = min(0.3, max(0.1, math.ceil(100 * MIN_HELDOUT_ROWS / max(len(examples), 1)) / 100))
        examples, heldout = split_heldout(examples, fraction=val, seed=0)
    if len(examples) < MIN_TRAIN_ROWS or len(heldout) < MIN_HELDOUT_ROWS:
        raise ConfigError(
            f"{request.data}: {len(examples)} training and {len(heldout)} held-out rows; a sweep "
            f"needs at least {MIN_TRAIN_ROWS} and {MIN_HELDOUT_ROWS} to rank trials: add rows "
            "(or give --heldout FILE), or set data.allow_small: true in a YAML of your own"
        )
    generating = [e for e in heldout if not e.is_text]
    metric = choose_task_metric(generating, "auto") if generating else "none"
    lengths, limit, modules, gpu = _model_facts(request.model, examples, say=say)
    ordered = sorted(lengths)
    summary = (
        f"p50 {ordered[len(ordered) // 2]}, p90 {ordered[int(0.9 * (len(ordered) - 1))]}, "
        f"max {ordered[-1]} tokens"
    )
    return DataFacts(
        sweep_name(request.data) if request.name is None else request.name,
        FORMAT_ALIASES.get(train.reading.shape.name, train.reading.shape.name),
        len(examples),
        len(heldout),
        None if request.heldout else val,
        metric,
        sequence_lengths(lengths, limit=limit),
        summary,
        modules,
        gpu,
    )


def _model_facts(
    model: str, examples: list[Example], *, say: Callable[[str], None]
) -> tuple[list[int], int, list[str], bool]:
    """Token lengths under the model's template, its context, its linear layers, CUDA or not."""
    import torch

    from sweeps.driver.preflight_model import linear_layer_names
    from trainers.models import load_tokenizer, resolve_base_model
    from trainers.tokenize import resolve_template, tokenize_examples

    resolved = resolve_base_model(model, progress=say)
    tokenizer = load_tokenizer(resolved.path)
    tokenized = tokenize_examples(examples, tokenizer, resolve_template(tokenizer, "auto"))
    config = json.loads((resolved.path / "config.json").read_text())
    limit = int(config.get("max_position_embeddings") or 2048)
    layers = linear_layer_names(resolved.path) or ["all-linear"]  # no safetensors headers
    return [len(t) for t in tokenized], min(limit, 4096), layers, torch.cuda.is_available()


def _sized_to_budget(
    draft: Path,
    request: InitRequest,
    facts: DataFacts,
    budget: float,
    *,
    say: Callable[[str], None],
) -> tuple[int, tuple[int, int], SweepEstimate]:
    """The most trials (up to two epochs, else one) whose estimated wall time fits the budget
    (``HEADROOM`` of it, so that validate's own timing still fits)."""
    from sweeps.cli.dry_run import dry_run

    done = dry_run(draft, say=lambda _: None)  # its checks already passed once, above
    timing = done.timing
    say(
        f"Timed a short trial on {request.model}: {timing.step:.2f} s a step, "
        f"{timing.rung:.1f} s a rung, {timing.worker_start + timing.setup:.1f} s to start"
    )
    fallback = None
    for epochs in ((1, 2), (1, 1)):
        fitting = _most_trials(done, epochs, budget * HEADROOM)
        if fitting is not None and fitting[0] >= 4:
            return fitting
        fallback = fitting or fallback
    if fallback is not None:
        return fallback
    least = _estimate(done, (1, 1), 2)
    say(
        f"Warning: even 2 one-epoch trials take about {_wall(least)}, over the "
        f"{request.budget} budget; the YAML asks for 2"
    )
    return 2, (1, 1), least


def _most_trials(
    done: DryRun, epochs: tuple[int, int], budget: float
) -> tuple[int, tuple[int, int], SweepEstimate] | None:
    fitting = None
    for trials in range(2, MAX_TRIALS + 1):
        estimate = _estimate(done, epochs, trials)
        if estimate.wall_seconds > budget:
            break
        fitting = (trials, epochs, estimate)
    return fitting


def _estimate(done: DryRun, epochs: tuple[int, int], trials: int) -> SweepEstimate:
    from sweeps.cli.dry_run import visible_gpus
    from sweeps.config import IntRange
    from sweeps.driver.estimate import estimate_sweep
    from sweeps.driver.preflight import available_cpus

    config = done.plan.config
    space = config.search_space.model_copy(
        update={"num_epochs": IntRange(type="int", low=epochs[0], high=epochs[1])}
    )
    return estimate_sweep(
        config.model_copy(update={"search_space": space}),
        done.timing,
        num_samples=trials,
        token_lengths=list(done.plan.train_token_lengths),
        cpus=available_cpus(),
        gpus=visible_gpus(),
        base_cached=done.estimate.base_seconds == 0,
        driver_documents=done.estimate.driver_documents,
    )


def _wall(estimate: SweepEstimate) -> str:
    return str(estimate.lines()[-1].split(": ", 1)[1])


def render_yaml(
    request: InitRequest,
    facts: DataFacts,
    *,
    out: Path,
    estimate: SweepEstimate | None = None,
    num_samples: int,
    epochs: tuple[int, int],
) -> str:
    """The sweep YAML, commented: the command first, then why each value is what it is."""
    sizing = _sizing_comment(request, num_samples, estimate)
    return "".join(
        (
            _yaml_header(request, facts, out=out, sizing=sizing),
            _yaml_data(request, facts, out=out),
            _yaml_search_space(facts, epochs=epochs),
            _yaml_search_and_resources(facts, num_samples=num_samples),
            _yaml_objective(facts),
        )
    )


def _relative(path: Path, out: Path) -> str:
    """``path`` as the YAML names it: relative to the YAML's own directory."""
    return os.path.relpath(path.resolve(), out.resolve().parent)


def _sizing_comment(request: InitRequest, num_samples: int, estimate: SweepEstimate | None) -> str:
    if estimate is None:
        return "# (draft)"
    return (
        f"# Sized to the {request.budget} budget: {num_samples} trials, estimated "
        f"{_wall(estimate)} on this machine (sweep validate re-estimates it)."
    )


def _yaml_header(request: InitRequest, facts: DataFacts, *, out: Path, sizing: str) -> str:
    return f"""# sweep launch {out}
#
# Written by `sweep init {request.data}` for {facts.train_rows} training rows of shape
# {facts.shape}; held-out metric {facts.task_metric} (from the held-out references).
{sizing}
name: {json.dumps(facts.name)}
base_model: {json.dumps(request.model)}

"""


def _yaml_data(request: InitRequest, facts: DataFacts, *, out: Path) -> str:
    """The data section: the files, the held-out rows, and the reading keys given to init."""
    heldout = (
        f"  heldout: {json.dumps(_relative(request.heldout, out))}\n"
        if request.heldout
        else f"  val_set_size: {facts.val_set_size}   # held-out rows split off train: "
        f"{facts.heldout_rows} (at least {MIN_HELDOUT_ROWS} rank trials)\n"
    )
    extras = "".join(
        f"  {key}: {json.dumps(value)}\n"
        for key, value in (
            ("instruction", request.instruction),
            ("system_prompt", request.system_prompt),
        )
        if value
    )
    return f"""data:
  train: {json.dumps(_relative(request.data, out))}   # relative to this file
{heldout}  format: {facts.shape}
  task_metric: auto     # {facts.task_metric} for these references
{extras}
"""


def _yaml_search_space(facts: DataFacts, *, epochs: tuple[int, int]) -> str:
    """What Optuna samples per trial, and the training settings fixed for every trial."""
    return f"""search_space:           # what Optuna (TPE) samples per trial
  # LoRA's good learning rates are about 10x full fine-tuning's: measured on SmolLM2-135M, the
  # guides' 1e-4 to 3e-4 under-trained and 1e-3 to 1e-2 did best (docs/perf.md (g)); from 1e-2
  # up an adapter can forget what the base model knew, which the benchmark guard flags (j)
  learning_rate: {{type: loguniform, low: 3.0e-4, high: 1.0e-2}}
  lora_r: [8, 16, 32]
  lora_alpha: {{type: ratio_of_r, values: [1, 2]}}   # alpha = r x ratio (2r: Biderman et al. 2024)
  num_epochs: {{type: int, low: {epochs[0]}, high: {epochs[1]}}}
  sequence_len: {json.dumps(facts.sequence_len)}   # training rows: {facts.lengths} (p90 and longest, to 64)

training:               # fixed for every trial (Axolotl names)
  micro_batch_size: 4
  gradient_accumulation_steps: 1
  lora_target_modules: {json.dumps(facts.target_modules)}   # every linear layer
  evals_per_epoch: 2    # a rung every half epoch: held-out eval, checkpoint, report to Ray
  seed: 42

"""


def _yaml_search_and_resources(facts: DataFacts, *, num_samples: int) -> str:
    """The search (two trials at a time on CPU, one on a GPU), ASHA, and each trial's share."""
    return f"""search:
  algorithm: tpe
  num_samples: {num_samples}
  max_concurrent: {1 if facts.gpu else 2}
  seed: 0

scheduler:              # ASHA stops weak trials at a rung
  type: asha
  grace_period: 1
  reduction_factor: 2

resources:
  cpu: 1
  gpu: {1 if facts.gpu else 0}

"""


def _yaml_objective(facts: DataFacts) -> str:
    """What ranks trials (the task metric; held-out loss for plain text), tracking, evaluation."""
    objective = (
        "  metric: heldout/task_metric   # " + facts.task_metric + "\n  mode: max"
        if facts.task_metric != "none"
        else "  metric: heldout/loss   # plain text: nothing to generate and compare\n  mode: min"
    )
    return f"""objective:
{objective}

tracking:
  experiment: {json.dumps(facts.name)}

evaluation:
  max_new_tokens: 64
  generation_samples: {facts.generated}   # held-out rows generated at each rung: {"all of them" if facts.generated == facts.heldout_rows else f"{facts.generated} of {facts.heldout_rows}"}
"""
