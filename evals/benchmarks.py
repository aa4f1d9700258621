"""Benchmark scoring through lm-eval: the only module that imports lm_eval.

An already-loaded model (a base model, or base + LoRA adapter) is wrapped once in lm-eval's HFLM
and scored on every requested task, with a pinned batch size (scores shift with batch size,
lm-eval#1625). Metric names are lm-eval's own.

Data comes from lm-eval's normal loading (the Hugging Face Hub), or, on air-gapped machines, from
a local mirror: a directory of Hugging Face-schema jsonl files, set by ``$LORA_SWEEP_BENCHMARK_MIRROR``
or in YAML. For a mirror, task YAMLs are written that ``include:`` the installed task's own YAML
and override only where the data comes from (``dataset_path: json`` + ``data_files``); they take
precedence over the built-in tasks of the same name, so groups such as ``mmlu`` keep working.

What needs no lm-eval lives beside it: the scores as data (``evals/benchmark_scores.py``), where
the documents come from and why they cannot be had (``evals/benchmark_sources.py``), and the
dtype a model is scored in (``evals/scoring_dtype.py``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from evals.benchmark_scores import BenchmarkScores, EvalConfig, Sample, fill_group_stderr
from evals.benchmark_sources import MIRROR_FILES, MMLU_SPLITS, BenchmarkError, unavailable_reason
from evals.prefix_scoring import Answer, Request, score_sharing_prefixes, split_by_context

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from lm_eval.api.task import Task
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import PreTrainedTokenizerBase

SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}


def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def _find(mirror: Path, names: tuple[str, ...]) -> Path | None:
    return next((mirror / n for n in names if (mirror / n).is_file()), None)


def _override(
    builtin: Path, data_files: dict[str, str], splits: dict[str, str | None]
) -> dict[str, object]:
    override: dict[str, object] = {
        "include": str(builtin),
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files},
    }
    override.update(splits)
    return override


def write_mirror_tasks(mirror: Path, out_dir: Path) -> list[str]:
    """Task YAMLs reading the mirror's files; returns the task names the mirror can serve."""
    tasks_dir = _lm_eval_tasks_dir()
    builtin = {
        "arc_challenge": tasks_dir / "arc" / "arc_challenge.yaml",
        "truthfulqa_mc1": tasks_dir / "truthfulqa" / "truthfulqa_mc1.yaml",
        "truthfulqa_mc2": tasks_dir / "truthfulqa" / "truthfulqa_mc2.yaml",
        "hellaswag": tasks_dir / "hellaswag" / "hellaswag.yaml",
    }
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


def prefix_sharing_lm(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, *, batch_size: int
) -> HFLM:
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
            self,
            requests: list[Request],
            disable_tqdm: bool = False,
            override_bs: int | None = None,
        ) -> list[Answer]:
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
        process(documents) if process is not None else documents
    ).to_list()

    def process_docs(dataset: Dataset) -> Dataset | list[dict[str, object]]:
        if dataset is documents:
            return processed
        return process(dataset) if process is not None else dataset

    return process_docs


def score_benchmarks(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    *,
    tasks: list[str],
    batch_size: int,
    manager: TaskManager,
    num_fewshot: int | None = None,
    limit: int | float | None = None,
    samples: dict[str, list[int]] | None = None,
    share_prefix: bool = False,
) -> BenchmarkScores:
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
            model=lm,
            tasks=_documents_read_once(tasks, manager) or tasks,
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            log_samples=True,
            samples=samples,
        )
    if out is None:
        raise BenchmarkError("lm-eval returned no results")
    metrics = {task: _numeric(values) for task, values in out["results"].items()}
    logged = {task: [_sample(s) for s in rows] for task, rows in out.get("samples", {}).items()}
    config: EvalConfig = {
        "tasks": tasks,
        "batch_size": batch_size,
        "num_fewshot": num_fewshot,
        "limit": limit,
        "share_prefix": share_prefix,
        "documents": {t: len(rows) for t, rows in logged.items()},
        "seeds": "lm-eval defaults: 0,1234,1234,1234",
        "versions": out.get("versions", {}),
    }
    groups = {
        g: list(subtasks) for g, subtasks in out.get("group_subtasks", {}).items() if subtasks
    }
    scores = BenchmarkScores(metrics=metrics, samples=logged, config=config, groups=groups)
    fill_group_stderr(scores)
    return scores


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
    tasks: list[str],
    manager: TaskManager,
    *,
    mirror: Path | None,
    optional: bool = False,
    fix_hint: str = "",
) -> tuple[dict[str, TaskData], dict[str, str]]:
    """Every task's data, and for the ones that cannot be had, why. Unless they are optional,
    any missing one raises one line naming each and the fix (plus ``fix_hint``)."""
    found, missing = available_data(tasks, manager, mirror=mirror)
    if missing and not optional:
        raise BenchmarkError(
            "benchmark data cannot be had: " + "; ".join(missing.values()) + fix_hint
        )
    return found, missing


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
