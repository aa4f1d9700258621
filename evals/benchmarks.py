"""Benchmark scoring through lm-eval: the only module that imports lm_eval.

An already-loaded model (a base model, or base + LoRA adapter) is wrapped once in lm-eval's HFLM
and scored on every requested task, with a pinned batch size (scores shift with batch size,
lm-eval#1625). Metric names are lm-eval's own.

Data comes from lm-eval's normal loading (the Hugging Face Hub), or, on air-gapped machines, from
a local mirror: a directory of Hugging Face-schema jsonl files, set by ``$LORA_SWEEP_BENCHMARK_MIRROR``
or in YAML. For a mirror, task YAMLs are written that ``include:`` the installed task's own YAML
and override only where the data comes from (``dataset_path: json`` + ``data_files``); they take
precedence over the built-in tasks of the same name, so groups such as ``mmlu`` keep working.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

import yaml

from evals.prefix_scoring import Answer, Request, score_sharing_prefixes, split_by_context

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from lm_eval.api.task import Task
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import PreTrainedTokenizerBase

MIRROR_ENV = "LORA_SWEEP_BENCHMARK_MIRROR"
# task -> {split: candidate file names in the mirror, first found wins}
MIRROR_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "arc_challenge": {
        "train": ("arc_challenge_train.jsonl",),
        "validation": ("arc_challenge_validation.jsonl",),
        "test": ("arc_challenge_test.jsonl",),
    },
    "truthfulqa_mc1": {"validation": ("truthfulqa_mc_validation.jsonl",)},
    "truthfulqa_mc2": {"validation": ("truthfulqa_mc_validation.jsonl",)},
    "hellaswag": {
        "train": ("hellaswag_train.jsonl",),
        "validation": ("hellaswag_validation.jsonl", "hellaswag_validation_DERIVED_lossy.jsonl"),
    },
}
MMLU_SPLITS = {
    "test": "mmlu_test.jsonl",
    "dev": "mmlu_dev.jsonl",
    "validation": "mmlu_validation.jsonl",
}
SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}


class BenchmarkError(ValueError):
    """A benchmark that cannot be run, phrased as one line that says how to fix it."""


# One document's record, kept for paired tests: doc_id, target, and each metric's value
Sample = dict[str, str | float]


class EvalConfig(TypedDict, total=False):
    """What a scoring ran (``eval_config.json``): lm-eval's settings and documents, and the
    plan's phase and seconds per task (evals/benchmark_plan.py adds those two)."""

    tasks: list[str]
    batch_size: int
    num_fewshot: int | None
    limit: int | float | None
    share_prefix: bool
    documents: dict[str, int]  # per task
    seeds: str
    versions: dict[str, object]  # per task, as lm-eval reports them
    stderr_filled: list[str]  # group/metric pairs whose stderr fill_group_stderr computed
    dtype: str  # what the model was scored in
    phase: str
    seconds: dict[str, float]  # per task


# the config entries that are per-task mappings: merged, not replaced, when scores are merged
PER_TASK_CONFIG: tuple[Literal["documents", "versions", "seconds"], ...] = (
    "documents", "versions", "seconds")  # fmt: skip


class ScoresJson(TypedDict):
    """BenchmarkScores as JSON (the base model's cached scores)."""

    metrics: dict[str, dict[str, float]]
    samples: dict[str, list[Sample]]
    config: EvalConfig
    groups: dict[str, list[str]]


@dataclass
class BenchmarkScores:
    """lm-eval's metrics per task (its own names), per-sample outputs, and what was run."""

    metrics: dict[str, dict[str, float]]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    config: EvalConfig = field(default_factory=EvalConfig)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> its subtasks

    def members(self, task: str) -> list[str]:
        """A task and, for a group such as ``mmlu``, every subgroup and subtask under it."""
        found = [task]
        for child in self.groups.get(task, []):
            found += self.members(child)
        return found

    def only(self, tasks: list[str]) -> BenchmarkScores:
        """The part of these scores that belongs to ``tasks`` (with their subtasks)."""
        keep = {m for t in tasks for m in self.members(t)}
        return BenchmarkScores(
            metrics={k: v for k, v in self.metrics.items() if k in keep},
            samples={k: v for k, v in self.samples.items() if k in keep},
            config=self.config,
            groups={k: v for k, v in self.groups.items() if k in keep},
        )

    def merge(self, other: BenchmarkScores) -> BenchmarkScores:
        """Both sets of tasks; config entries that are per-task mappings are merged too."""
        config: EvalConfig = {**self.config, **other.config}
        for key in PER_TASK_CONFIG:
            if key in self.config and key in other.config:
                config[key] = {**self.config[key], **other.config[key]}
        return BenchmarkScores(
            metrics={**self.metrics, **other.metrics},
            samples={**self.samples, **other.samples},
            config=config,
            groups={**self.groups, **other.groups},
        )

    def to_json(self) -> ScoresJson:
        return {"metrics": self.metrics, "samples": self.samples, "config": self.config,
                "groups": self.groups}  # fmt: skip

    @classmethod
    def from_json(cls, raw: ScoresJson) -> BenchmarkScores:
        return cls(**raw)


def mirror_directory(configured: str | Path | None = None) -> Path | None:
    """The local mirror: from the config, else ``$LORA_SWEEP_BENCHMARK_MIRROR``, else none."""
    value = configured or os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise BenchmarkError(
            f"benchmark mirror {path} is not a directory (set by config or ${MIRROR_ENV})"
        )
    return path


def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def _find(mirror: Path, names: tuple[str, ...]) -> Path | None:
    return next((mirror / n for n in names if (mirror / n).is_file()), None)


def _override(
    builtin: Path, data_files: dict[str, str], splits: dict[str, str | None]
) -> dict[str, object]:
    override: dict[str, object] = {
        "include": str(builtin), "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files},
    }  # fmt: skip
    override.update(splits)
    return override


def write_mirror_tasks(mirror: Path, out_dir: Path) -> list[str]:
    """Task YAMLs reading the mirror's files; returns the task names the mirror can serve."""
    tasks_dir = _lm_eval_tasks_dir()
    builtin = {"arc_challenge": tasks_dir / "arc" / "arc_challenge.yaml",
               "truthfulqa_mc1": tasks_dir / "truthfulqa" / "truthfulqa_mc1.yaml",
               "truthfulqa_mc2": tasks_dir / "truthfulqa" / "truthfulqa_mc2.yaml",
               "hellaswag": tasks_dir / "hellaswag" / "hellaswag.yaml"}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    served = []
    for task, splits in MIRROR_FILES.items():
        found = {split: _find(mirror, names) for split, names in splits.items()}
        files = {split: str(path) for split, path in found.items() if path is not None}
        if not files:
            continue
        # splits the mirror lacks are switched off (e.g. hellaswag's train, used only for few-shot)
        split_keys = {SPLIT_KEYS[s]: (s if s in files else None) for s in splits if s in SPLIT_KEYS}
        config = {**_override(builtin[task], files, split_keys), "task": task}
        (out_dir / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        served.append(task)
    served += _write_mmlu_tasks(mirror, out_dir, tasks_dir / "mmlu" / "default")
    return served


def _write_mmlu_tasks(mirror: Path, out_dir: Path, builtin_dir: Path) -> list[str]:
    """MMLU is 57 subject tasks grouped as ``mmlu``: one jsonl per subject and split."""
    sources = {
        split: mirror / name for split, name in MMLU_SPLITS.items() if (mirror / name).is_file()
    }
    if "test" not in sources:
        return []
    by_subject: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for split, path in sources.items():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                by_subject[json.loads(line)["subject"]][split].append(line)
    data_dir = out_dir / "mmlu_data"
    data_dir.mkdir(exist_ok=True)
    served = []
    for subject, splits in sorted(by_subject.items()):
        builtin = builtin_dir / f"mmlu_{subject}.yaml"
        if not builtin.is_file():
            continue
        files = {}
        for split, lines in splits.items():
            target = data_dir / f"{subject}_{split}.jsonl"
            target.write_text("\n".join(lines) + "\n", encoding="utf-8")
            files[split] = str(target)
        config = {**_override(builtin, files, {}), "task": f"mmlu_{subject}"}
        (out_dir / f"mmlu_{subject}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        served.append(f"mmlu_{subject}")
    return [*served, "mmlu"] if served else []


def mirror_tasks_dir(mirror: Path, cache: Path) -> tuple[Path, list[str]]:
    """Mirror task YAMLs under ``cache``, keyed by the mirror's file names, sizes and mtimes."""
    listing = sorted(
        (p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in mirror.glob("*.jsonl")
    )
    key = hashlib.sha256(json.dumps([str(mirror.resolve()), listing]).encode()).hexdigest()[:16]
    out_dir = cache / "benchmark_tasks" / key
    served_file = out_dir / "served.json"
    if served_file.is_file():
        return out_dir, json.loads(served_file.read_text())
    served = write_mirror_tasks(mirror, out_dir)
    served_file.write_text(json.dumps(served))
    return out_dir, served


def task_manager(*, mirror: Path | None, include_path: Path | None, cache: Path) -> TaskManager:
    """lm-eval's task index, with the mirror's task YAMLs (and ``include_path``) on top."""
    quiet_datasets()
    paths = []
    if mirror is not None:
        paths.append(mirror_tasks_dir(mirror, cache)[0])
    if include_path is not None:
        paths.append(include_path)
    return _indexed_tasks(tuple(str(p) for p in paths))


@functools.lru_cache(maxsize=4)
def _indexed_tasks(paths: tuple[str, ...], *, defaults: bool = True) -> TaskManager:
    """Indexing lm-eval's ~15k task YAMLs takes seconds: once per process and set of paths."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths) or None, include_defaults=defaults)


def narrow_task_manager(dirs: list[str]) -> TaskManager:
    """An index of only ``dirs`` (from :func:`narrow_index_dirs`): milliseconds, not seconds."""
    quiet_datasets()  # the mirror's tasks override the built-in ones: no warning per task
    return _indexed_tasks(tuple(dirs), defaults=False)


def narrow_index_dirs(data: list[TaskData], manager: TaskManager) -> list[str] | None:
    """The directories whose YAMLs define these tasks, their groups and subtasks, in the index's
    order of precedence: a trial indexes these alone. None when that would define any of them
    differently from ``manager`` (then trials index everything)."""
    names = [name for task in data for name in task.names]
    roots = [_lm_eval_tasks_dir(), *(Path(p) for p in manager.include_path or [])]
    dirs = set()
    for name in names:
        entry = manager.task_index.get(name)
        if entry is None or entry.yaml_path is None:
            return None
        dirs.add(Path(entry.yaml_path).parent)

    def precedence(directory: Path) -> tuple[int, str]:
        inside = [i for i, root in enumerate(roots) if directory.is_relative_to(root)]
        return (max(inside, default=len(roots)), str(directory))

    ordered = [str(d) for d in sorted(dirs, key=precedence)]
    narrow = narrow_task_manager(ordered)
    same = all(
        name in narrow.task_index
        and narrow.task_index[name].yaml_path == manager.task_index[name].yaml_path
        for name in names
    )
    return ordered if same else None


def check_tasks(tasks: list[str], manager: TaskManager) -> None:
    """Unknown task names fail before any model is loaded, naming the task."""
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise BenchmarkError(
            f"unknown lm-eval task(s): {', '.join(unknown)} (see `lm_eval ls tasks`)"
        )


def known_offline_skips(tasks: list[str], mirror: Path | None) -> dict[str, str] | None:
    """Why each task is skipped when the answer needs no lm-eval: the Hub is offline or does not
    answer, no mirror is set, and every task is one whose data we know lives only there (None
    otherwise: ask lm-eval). Importing lm-eval and its task index costs seconds a launch would
    wait for, and a Hub that does not answer would cost each dataset its network time-outs."""
    if mirror is not None or not set(tasks) <= {*MIRROR_FILES, "mmlu"}:
        return None
    why = hub_unavailable()
    if why is None:
        return None
    fix = (
        f"set ${MIRROR_ENV} or benchmarks.mirror to a directory of Hugging Face-schema jsonl files"
    )
    return {t: f"{t}: {why} and no local mirror is set; {fix}" for t in tasks}


def hub_offline() -> bool:
    flags = (os.environ.get(k, "0").lower() for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag not in ("0", "", "false", "no") for flag in flags)


def _hub_address() -> tuple[str, int]:
    """Host and port of the Hub the datasets come from ($HF_ENDPOINT, e.g. a mirror, or the Hub)."""
    from urllib.parse import urlsplit

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return endpoint.hostname or "huggingface.co", endpoint.port or (
        80 if endpoint.scheme == "http" else 443)  # fmt: skip


HUB_ADDRESS: tuple[str, int] | None = None  # None: from $HF_ENDPOINT (tests point it elsewhere)
HUB_PROBE_SECONDS = 3.0


def hub_unavailable(*, timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the Hugging Face Hub cannot serve benchmark data (None: it answers): flagged offline,
    or no connection to it within ``timeout`` seconds, name lookup included."""
    if hub_offline():
        return "the Hugging Face Hub is offline"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # only the proxy can say: lm-eval asks through it
    import socket
    import threading

    answered: list[bool] = []
    address = HUB_ADDRESS or _hub_address()

    def probe() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no time-out of its own
    thread.start()
    thread.join(timeout)
    if answered and answered[0]:
        return None
    host, port = address
    return f"the Hugging Face Hub does not answer ({host}:{port} within {timeout:g} s)"


def prefix_sharing_lm(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *,
                      batch_size: int) -> HFLM:  # fmt: skip
    """lm-eval's HFLM, but the choices of one question share one forward pass of its context.

    lm-eval scores each (context, continuation) pair as a whole sequence. For multiple-choice
    tasks every choice repeats the same context, so here the context runs once and its key/value
    cache is reused for each batch of continuations. Contexts are visited in sorted order and
    each reuses the cache of the longest prefix it shares with the one before: TruthfulQA's
    six-shot preamble, most of its tokens, runs once per task instead of once per question. The
    log-likelihoods are the same sums over the same tokens; they agree with lm-eval's own path to
    float rounding (tests/evals/test_benchmarks.py checks 1e-4).
    """
    from lm_eval.models.huggingface import HFLM

    class PrefixSharingHFLM(HFLM):  # type: ignore[misc]
        def _loglikelihood_tokens(
            self, requests: list[Request], disable_tqdm: bool = False,
            override_bs: int | None = None,
        ) -> list[Answer]:  # fmt: skip
            long, groups = split_by_context(requests, max_length=self.max_length)
            answers: dict[int, Answer] = {}
            if long:  # lm-eval truncates these from the left: its own path
                plain = super()._loglikelihood_tokens(
                    [requests[i] for i in long], True, override_bs
                )
                answers.update(zip(long, plain, strict=True))
            answers.update(score_sharing_prefixes(self, requests, groups))
            return [answers[i] for i in range(len(requests))]

    return PrefixSharingHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


@contextlib.contextmanager
def _quiet_evaluation() -> Iterator[None]:
    """lm-eval without its side work: no ``pip list`` and torch environment probe after every
    evaluation (0.6 s each, a few per trial; our runs record versions and hardware once, as
    provenance), and no progress bars across the sweep's live table. What it wrote to stderr is
    shown after all if the evaluation fails."""
    import lm_eval.evaluator as evaluator

    original, stderr = evaluator.add_env_info, io.StringIO()
    evaluator.add_env_info = lambda _results: None
    try:
        with contextlib.redirect_stderr(stderr):
            yield
    except BaseException:
        sys.stderr.write(stderr.getvalue())
        raise
    finally:
        evaluator.add_env_info = original


def _documents_read_once(tasks: list[str], manager: TaskManager) -> list[Task] | None:
    """The tasks, built, with their evaluation documents processed and read into memory once.

    lm-eval runs a task's ``process_docs`` and reads its dataset row by row again each time it
    asks for the documents (three times an evaluation): for HellaSwag's 10k documents that is
    seconds of a proxy that scores eight. Other splits (few-shot examples) are processed as
    before. None for a group, which keeps lm-eval's own loading and aggregation (told from the
    index, so a group's tasks are not built twice).
    """
    if set(tasks) & set(manager.all_groups):
        return None
    loaded = manager.load(tasks)
    for task in loaded["tasks"].values():
        split = task.config.test_split if task.has_test_docs() else task.config.validation_split
        if split is None or not hasattr(task.dataset[split], "to_list"):
            return None
        task.config.process_docs = _processed_once(task.config.process_docs, task.dataset[split])
    return list(loaded["tasks"].values())


def _processed_once(
    process: Callable[[Dataset], Dataset] | None, documents: Dataset
) -> Callable[[Dataset], Dataset | list[dict[str, object]]]:
    """``process_docs`` that returns the evaluation split, processed once, as a list of dicts."""
    processed: list[dict[str, object]] = (
        process(documents) if process is not None else documents).to_list()  # fmt: skip

    def process_docs(dataset: Dataset) -> Dataset | list[dict[str, object]]:
        if dataset is documents:
            return processed
        return process(dataset) if process is not None else dataset

    return process_docs


SCORING_DTYPES = ("auto", "float32", "bfloat16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX-512 BF16: 3.5x fp32's throughput
    for SmolLM2-135M on one core here, docs/perf.md); read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def scoring_dtype(model: torch.nn.Module, choice: str) -> torch.dtype:
    """The dtype benchmarks are scored in: ``auto`` is bf16 for an fp32 model on a CPU that
    multiplies bf16 natively, else the model's own dtype (a GPU model already trains in bf16 or
    fp16); ``float32`` scores exactly as an fp32 lm-eval CLI run does."""
    import torch

    own = next(model.parameters()).dtype
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None):
        return own  # a 4-bit or 8-bit model is scored as it is: its layers are not castable
    if choice == "float32":
        return torch.float32 if own in (torch.float32, torch.bfloat16, torch.float16) else own
    if choice == "bfloat16":
        return torch.bfloat16
    on_cpu = next(model.parameters()).device.type == "cpu"
    return torch.bfloat16 if own == torch.float32 and on_cpu and cpu_has_bf16() else own


@contextlib.contextmanager
def scored_in(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[torch.nn.Module]:
    """The model in ``dtype`` for scoring: itself when it already is, else a copy (the
    trained weights are never rounded in place). A copied PEFT model has its adapter merged
    first, in the trained precision: the same function, without a LoRA branch beside every
    adapted layer (2.3x slower on one CPU core with all-linear LoRA, perf/bench_forgetting.py)."""
    import copy

    if next(model.parameters()).dtype == dtype:
        yield model
        return
    copied = copy.deepcopy(model)
    merge = getattr(copied, "merge_and_unload", None)
    if callable(merge):  # LoRA dropout is off in eval: merging is exact
        copied = merge()
    copied = copied.to(dtype)
    try:
        yield copied
    finally:
        del copied


def score_benchmarks(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *, tasks: list[str],
    batch_size: int, manager: TaskManager,
    num_fewshot: int | None = None, limit: int | float | None = None,
    samples: dict[str, list[int]] | None = None, share_prefix: bool = False,
) -> BenchmarkScores:  # fmt: skip
    """Score an already-loaded model on lm-eval tasks (the model is not reloaded per task).

    ``samples`` picks documents by index per (leaf) task, as lm-eval's ``--samples`` does; the
    per-sample records keep the true document ids. Seeds are lm-eval's defaults (random 0,
    numpy/torch/few-shot 1234), as the lm-eval CLI uses, so the numbers are the CLI's numbers on
    the same model, data and batch size.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    quiet_datasets()
    check_tasks(tasks, manager)
    lm = (
        prefix_sharing_lm(model, tokenizer, batch_size=batch_size)
        if share_prefix
        else HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    )
    with _quiet_evaluation():
        out = lm_eval.simple_evaluate(
            model=lm, tasks=_documents_read_once(tasks, manager) or tasks,
            num_fewshot=num_fewshot, limit=limit, task_manager=manager,
            log_samples=True, samples=samples,
        )  # fmt: skip
    if out is None:
        raise BenchmarkError("lm-eval returned no results")
    metrics = {task: _numeric(values) for task, values in out["results"].items()}
    logged = {task: [_sample(s) for s in rows] for task, rows in out.get("samples", {}).items()}
    config: EvalConfig = {
        "tasks": tasks, "batch_size": batch_size, "num_fewshot": num_fewshot, "limit": limit,
        "share_prefix": share_prefix, "documents": {t: len(rows) for t, rows in logged.items()},
        "seeds": "lm-eval defaults: 0,1234,1234,1234", "versions": out.get("versions", {}),
    }  # fmt: skip
    groups = {
        g: list(subtasks) for g, subtasks in out.get("group_subtasks", {}).items() if subtasks
    }
    scores = BenchmarkScores(metrics=metrics, samples=logged, config=config, groups=groups)
    fill_group_stderr(scores)
    return scores


def fill_group_stderr(scores: BenchmarkScores) -> None:
    """A group whose subtasks have one document each gets no stderr from lm-eval (its pooled
    formula needs a variance per subtask); give it the standard error over all its documents."""
    import statistics

    for group in scores.groups:
        metrics = scores.metrics.get(group, {})
        for name in [m for m in metrics if not m.endswith("_stderr")]:
            if math.isfinite(metrics.get(f"{name}_stderr", math.nan)):
                continue
            values = [float(row[name]) for leaf in scores.members(group)
                      for row in scores.samples.get(leaf, []) if isinstance(row.get(name), (int, float))]  # fmt: skip
            if len(values) >= 2:
                metrics[f"{name}_stderr"] = statistics.stdev(values) / math.sqrt(len(values))
                scores.config.setdefault("stderr_filled", []).append(f"{group}/{name}")


def quiet_datasets() -> None:
    """No `datasets` progress bars or lm-eval INFO lines under the sweep's live table."""
    import logging

    import datasets

    datasets.disable_progress_bars()
    for name in ("lm-eval", "lm_eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --------------------------------------------------------------------------- proxies and plans
@dataclass(frozen=True)
class TaskData:
    """What a requested task scores: its leaf tasks (in the group's order) with their document
    counts, a digest of the documents, and every name it is made of (groups and subtasks)."""

    leaves: dict[str, int]
    digest: str
    names: list[str] = field(default_factory=list)


def load_task_data(task: str, manager: TaskManager) -> TaskData:
    """Load a task's documents (Hub or mirror) and fingerprint them; raises when it cannot."""
    quiet_datasets()
    loaded = manager.load([task])
    leaves = loaded["tasks"]
    digest = hashlib.sha256()
    for name, leaf in sorted(leaves.items()):
        digest.update(f"{name}:{getattr(leaf, 'VERSION', '')}\n".encode())
        for doc in leaf.eval_docs:
            digest.update(json.dumps(doc, sort_keys=True, default=str).encode())
    names = list(dict.fromkeys([task, *loaded.get("groups", {}), *leaves]))
    counts = {name: len(leaf.eval_docs) for name, leaf in leaves.items()}
    return TaskData(counts, digest.hexdigest()[:16], names)


def proxy_samples(leaves: dict[str, int], *, size: int, seed: int) -> dict[str, list[int]]:
    """A fixed, seeded subset of ``size`` documents, as {leaf task: document indices}.

    A systematic sample over all the documents, each leaf's in a seeded random order and the
    leaves in the task's own order. A single task gets a random sample. A group (MMLU's 57
    subjects, in its four categories) is stratified by subtask: each gets its proportional share
    of ``size``, rounded down or up, so an 8-document MMLU proxy has 8 subjects spread over the
    categories. Leaves whose share rounds to nothing are left out.
    """
    import random

    frame = [
        (name, index)
        for name, count in leaves.items()
        for index in random.Random(f"{seed}:{name}").sample(range(count), count)
    ]
    size = min(size, len(frame))
    if size < 1:
        return {}
    step = len(frame) / size
    start = random.Random(seed).random() * step
    picked: dict[str, list[int]] = defaultdict(list)
    for k in range(size):
        name, index = frame[min(int(start + k * step), len(frame) - 1)]
        picked[name].append(index)
    return {name: sorted(ids) for name, ids in sorted(picked.items())}


def pool_group(scores: BenchmarkScores, group: str) -> BenchmarkScores:
    """Scores of some of a group's subtasks, plus the group's own: the mean of each metric over
    all their documents (lm-eval's size-weighted mean, as MMLU uses), with its standard error."""
    leaves = list(scores.samples)
    names = sorted({m for leaf in leaves for m in scores.metrics.get(leaf, {})
                    if not m.endswith("_stderr")})  # fmt: skip
    pooled = {}
    for name in names:
        values = [float(row[name]) for leaf in leaves for row in scores.samples[leaf]
                  if isinstance(row.get(name), (int, float))]  # fmt: skip
        if values:
            pooled[name] = sum(values) / len(values)
    out = BenchmarkScores(
        metrics={**scores.metrics, group: pooled}, samples=scores.samples,
        config=scores.config, groups={**scores.groups, group: leaves},
    )  # fmt: skip
    fill_group_stderr(out)
    return out


def available_data(
    tasks: list[str], manager: TaskManager, *, mirror: Path | None
) -> tuple[dict[str, TaskData], dict[str, str]]:
    """Each task's data, loaded now; and, for those that cannot be had, why and how to fix it."""
    found, missing = {}, {}
    for task in tasks:
        try:
            found[task] = load_task_data(task, manager)
        except Exception as exc:  # lm-eval and datasets raise many kinds; each becomes one line
            missing[task] = unavailable_reason(task, exc, mirror)
    return found, missing


def check_data(
    tasks: list[str], manager: TaskManager, *, mirror: Path | None, optional: bool = False,
    fix_hint: str = "",
) -> tuple[dict[str, TaskData], dict[str, str]]:  # fmt: skip
    """Every task's data, and for the ones that cannot be had, why. Unless they are optional,
    any missing one raises one line naming each and the fix (plus ``fix_hint``)."""
    found, missing = available_data(tasks, manager, mirror=mirror)
    if missing and not optional:
        raise BenchmarkError(
            "benchmark data cannot be had: " + "; ".join(missing.values()) + fix_hint
        )
    return found, missing


def unavailable_reason(task: str, error: Exception, mirror: Path | None) -> str:
    """Why a task's data cannot be had, and how to fix it, in one line."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    where = f"the mirror {mirror} has no files for it" if mirror else "no local mirror is set"
    fix = (
        f"set ${MIRROR_ENV} or benchmarks.mirror to a directory of Hugging Face-schema jsonl files"
    )
    if hub_offline():
        return f"{task}: the Hugging Face Hub is offline and {where} ({first}); {fix}"
    return f"{task}: its data could not be loaded ({type(error).__name__}: {first}); {fix}, or check the network"


def _numeric(values: Mapping[str, object]) -> dict[str, float]:
    """lm-eval's ``acc,none`` -> ``acc``; ``acc_stderr,none`` -> ``acc_stderr``; text dropped."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key.split(",")[0]] = float(value)
    return out


def _sample(row: Mapping[str, object]) -> Sample:
    """The per-sample record kept for paired tests: id, target, and each metric's value."""
    doc_id = row.get("doc_id")
    assert isinstance(doc_id, int), f"lm-eval logged a sample with no document id: {sorted(row)}"
    keep = {k: v for k, v in row.items() if isinstance(v, (int, float, str)) and k != "doc_hash"}
    return {"doc_id": doc_id, **keep}
