"""Benchmark scoring speed: seconds per document per task, and the scorer's throughput as a share of
the raw forward throughput of the same model on the same number of tokens.

    python perf/bench_scorer.py --mirror ../shared/benchmarks --documents 64 [--repo OLD_CHECKOUT]

SmolLM2-135M-Instruct (the embedded model) on one CPU thread, as a trial scores its benchmarks.
For each task the same seeded documents are scored by:

- ``lm_eval``: lm-eval's own HFLM path (one whole sequence per choice), fp32: the CLI's numbers;
- ``ours_fp32`` and ``ours_bf16``: this checkout's scorer (``share_prefix``: several questions a
  forward pass, each context once), in fp32 and in bf16;
- ``before`` (with ``--repo``): the scorer of another checkout (e.g. a worktree of an older
  commit), fp32, run in a subprocess.

The *work* of a task is the tokens a context-once scorer must run: each question's context once,
plus every choice's continuation. The raw forward throughput is the model's forward pass alone on
that many tokens, in batches of 16 rows of the task's mean row length (no scoring, no padding, no
lm-eval). The ratio of the two is how close the scorer runs to what this machine can do.
Agreement: the share of documents whose 0/1 score is the same as lm-eval's own path's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TASKS = ("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2")


def load_model(dtype_name: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.models import ensure_embedded_model

    path = ensure_embedded_model("smollm2-135m-instruct", progress=lambda _: None)
    dtype = getattr(torch, dtype_name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    return model.eval(), AutoTokenizer.from_pretrained(path)


def capture_work(recorded: list[int]) -> None:
    """Record each scoring call's work: its contexts once plus every continuation."""
    import evals.benchmarks as benchmarks

    original = benchmarks.split_by_context

    def split(requests: list[Any], *, max_length: int) -> Any:
        contexts = {tuple(context) for _, context, _ in requests}
        recorded.append(sum(map(len, contexts)) + sum(len(c) for _, _, c in requests))
        return original(requests, max_length=max_length)

    benchmarks.split_by_context = split


def score_task(
    task: str, *, model: Any, tokenizer: Any, manager: Any, documents: int, share: bool
) -> dict[str, Any]:
    from evals.benchmark_scores import proxy_samples
    from evals.benchmarks import load_task_data, score_benchmarks

    samples = proxy_samples(load_task_data(task, manager).leaves, size=documents, seed=0)
    names = list(samples) if list(samples) != [task] else [task]
    work: list[int] = []
    capture_work(work)
    started = time.perf_counter()
    scores = score_benchmarks(model, tokenizer, tasks=names, batch_size=16, manager=manager,
                              samples=samples, share_prefix=share)  # fmt: skip
    seconds = time.perf_counter() - started
    metric = "acc_norm" if task in ("arc_challenge", "hellaswag") else "acc"
    per_doc = {f"{leaf}/{row['doc_id']}": float(row[metric])
               for leaf, rows in scores.samples.items() for row in rows}  # fmt: skip
    return {"seconds": seconds, "documents": len(per_doc), "work_tokens": sum(work),
            "seconds_per_document": seconds / max(len(per_doc), 1), "scores": per_doc}  # fmt: skip


def raw_throughput(model: Any, *, tokens: int, row_length: int) -> float:
    """Tokens per second of the bare forward pass on ``tokens`` tokens in rows of 16."""
    import torch

    rows = max(1, round(tokens / row_length))
    batches = [min(16, rows - i) for i in range(0, rows, 16)]
    with torch.no_grad():
        model(torch.randint(100, 1000, (1, row_length)))  # warm-up
        started = time.perf_counter()
        for size in batches:
            model(torch.randint(100, 1000, (size, row_length)))
        seconds = time.perf_counter() - started
    return rows * row_length / seconds


def run_side(side: str, *, mirror: Path, documents: int, cache: Path) -> dict[str, Any]:
    """One scorer on every task (this process)."""
    import torch

    from evals.benchmarks import quiet_datasets, task_manager

    torch.set_num_threads(1)
    quiet_datasets()
    dtype = "bfloat16" if side == "ours_bf16" else "float32"
    model, tokenizer = load_model(dtype)
    manager = task_manager(mirror=mirror, include_path=None, cache=cache)
    out = {}
    for task in TASKS:
        result = score_task(task, model=model, tokenizer=tokenizer, manager=manager,
                            documents=documents, share=side != "lm_eval")  # fmt: skip
        rows = result["documents"] * 4  # about four choices a question
        result["raw_tokens_per_second"] = raw_throughput(
            model, tokens=result["work_tokens"], row_length=max(8, result["work_tokens"] // rows)
        )
        result["tokens_per_second"] = result["work_tokens"] / result["seconds"]
        result["share_of_raw"] = result["tokens_per_second"] / result["raw_tokens_per_second"]
        out[task] = result
    return out


def in_subprocess(side: str, repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``side`` scored by the checkout at ``repo`` (its own evals package), in a fresh process."""
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{REPO}"}
    out = Path(args.cache) / f"{side}.json"
    command = [sys.executable, __file__, "--mirror", str(args.mirror), "--documents",
               str(args.documents), "--side", side, "--out", str(out), "--cache", str(args.cache)]  # fmt: skip
    subprocess.run(command, env=env, check=True)
    return dict(json.loads(out.read_text()))


def agreement(a: dict[str, float], b: dict[str, float]) -> float:
    """The share of documents scored alike: 0/1 scores equal, graded ones within 0.001."""
    common = set(a) & set(b)
    return sum(abs(a[k] - b[k]) <= 1e-3 for k in common) / max(len(common), 1)


def summarise(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    reference = sides["lm_eval"]
    summary: dict[str, Any] = {}
    for task in TASKS:
        row = {side: {k: v for k, v in result[task].items() if k != "scores"}
               for side, result in sides.items()}  # fmt: skip
        for side, result in sides.items():
            row[side]["agrees_with_lm_eval"] = agreement(
                result[task]["scores"], reference[task]["scores"]
            )
        summary[task] = row
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--documents", type=int, default=64)
    parser.add_argument("--repo", type=Path, help="another checkout scored as 'before'")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="/tmp/bench-scorer-cache", help=argparse.SUPPRESS)
    parser.add_argument("--reuse", nargs="*", default=[], help="sides kept from an earlier run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    if args.side:  # a subprocess: one scorer, raw results
        result = run_side(args.side, mirror=args.mirror, documents=args.documents,
                          cache=Path(args.cache))  # fmt: skip
        args.out.write_text(json.dumps(result))
        return result
    kept = Path(args.cache)  # --reuse: a side measured by an earlier run of the same settings

    def side(name: str, repo: Path) -> dict[str, Any]:
        if name in args.reuse and (kept / f"{name}.json").is_file():
            return dict(json.loads((kept / f"{name}.json").read_text()))
        return in_subprocess(name, repo, args)

    sides = {name: side(name, REPO) for name in ("lm_eval", "ours_fp32", "ours_bf16")}
    if args.repo:
        sides["before"] = side("before", args.repo.resolve())
    from _report import emit

    result = {"settings": {"documents": args.documents, "tasks": list(TASKS), "threads": 1,
                           "batch_size": 16, "before": str(args.repo) if args.repo else None},
              "tasks": summarise(sides)}  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "perf"))
    if "--side" not in sys.argv:
        sys.path.insert(0, str(REPO))
    main()
