"""Our benchmark scores vs the lm-eval CLI's, same model, data (local mirror) and batch size.

    python perf/bench_lm_eval_parity.py --mirror ../shared/benchmarks --tasks arc_challenge,truthfulqa_mc2
    python perf/bench_lm_eval_parity.py --mirror ../shared/benchmarks --tasks mmlu,hellaswag --limit 50

Both sides read the same mirror task YAMLs (evals/benchmarks.py writes them). The CLI loads the
model from its converted safetensors directory; we wrap the already-loaded model in HFLM. Every
metric must agree to 1e-4. Wall times of both are reported too (the Python API was once reported
4x slower than the CLI, lm-eval#3207).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "perf"))

from _report import emit  # noqa: E402

TOLERANCE = 1e-4


def run_cli(
    model_dir: Path, tasks_dir: Path, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "lm_eval", "run", "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32",
        "--tasks", args.tasks, "--include_path", str(tasks_dir),
        "--batch_size", str(args.batch_size), "--output_path", str(out),
    ]  # fmt: skip
    if args.limit:
        command += ["--limit", str(args.limit)]
    if args.num_fewshot is not None:
        command += ["--num_fewshot", str(args.num_fewshot)]
    subprocess.run(command, check=True)
    [result] = sorted(out.rglob("results_*.json"))
    return dict(json.loads(result.read_text())["results"])


def recorded_cli(path: Path, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    """The CLI's metrics from an earlier run with the same tasks, limit, few-shot and batch size,
    as docs/perf.json holds them (the CLI side does not change with our code). Raises if none."""
    runs = json.loads(path.read_text()).get("lm_eval_parity", [])
    keys = ("tasks", "limit", "num_fewshot", "batch_size")
    for run in runs:
        if all(run["settings"].get(k) == getattr(args, k) for k in keys) and run.get("lm_eval"):
            if run["lm_eval"] != lm_eval_version():
                continue
            cli: dict[str, Any] = {}
            for row in run["rows"]:
                cli.setdefault(row["task"], {})[f"{row['metric']},none"] = row["cli"]
            return cli, float(run["cli_seconds"])
    raise SystemExit(f"{path}: no recorded CLI run with the same {', '.join(keys)} and lm-eval")


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def compare(
    ours: dict[str, dict[str, float]], cli: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for task, metrics in sorted(ours.items()):
        for name, value in sorted(metrics.items()):
            theirs = cli.get(task, {}).get(f"{name},none")
            if isinstance(theirs, (int, float)):
                rows.append({"task": task, "metric": name, "ours": value, "cli": float(theirs),
                             "abs_diff": abs(value - float(theirs))})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--tasks", default="arc_challenge,truthfulqa_mc2")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--num-fewshot", type=int)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--share-prefix",
        action="store_true",
        help="our side runs each context once (the default in sweeps)",
    )
    parser.add_argument(
        "--reuse-cli",
        type=Path,
        metavar="PERF_JSON",
        help="take the CLI's numbers from a recorded run with the same settings and lm-eval "
        "version (docs/perf.json) instead of running it again: for re-checking our side",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from evals.benchmarks import mirror_tasks_dir, score_benchmarks, task_manager
    from trainers.models import cache_root, load_causal_lm, load_tokenizer, resolve_base_model

    model_dir = resolve_base_model("smollm2-135m-instruct").path
    tasks_dir, _ = mirror_tasks_dir(args.mirror, cache_root())
    started = time.perf_counter()
    tokenizer, model = load_tokenizer(model_dir), load_causal_lm(model_dir)
    manager = task_manager(mirror=args.mirror, include_path=None, cache=cache_root())
    ours = score_benchmarks(model, tokenizer, tasks=args.tasks.split(","), batch_size=args.batch_size,
                            manager=manager, num_fewshot=args.num_fewshot, limit=args.limit,
                            share_prefix=args.share_prefix)  # fmt: skip
    ours_seconds = time.perf_counter() - started
    if args.reuse_cli:
        cli, cli_seconds = recorded_cli(args.reuse_cli, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            cli = run_cli(model_dir, tasks_dir, args, Path(tmp))
            cli_seconds = time.perf_counter() - started
    rows = compare(ours.metrics, cli)
    result = {
        "settings": {**vars(args), "mirror": str(args.mirror), "out": str(args.out),
                     "reuse_cli": str(args.reuse_cli) if args.reuse_cli else None},
        "lm_eval": lm_eval_version(), "cli_recorded": bool(args.reuse_cli),
        "rows": rows, "max_abs_diff": max((r["abs_diff"] for r in rows), default=float("nan")),
        "equal_to_1e-4": bool(rows) and all(r["abs_diff"] <= TOLERANCE for r in rows),
        "ours_seconds": ours_seconds, "cli_seconds": cli_seconds,
    }  # fmt: skip
    return emit(result, args.out)


if __name__ == "__main__":
    main()
