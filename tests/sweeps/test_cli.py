"""The CLI: --help, validate without torch, and bad input rejected before Ray with one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, tiny_sweep_config, write_jsonl

PROBE = """
import json, sys
from sweeps.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = [m for m in ("torch", "ray", "mlflow", "transformers", "peft", "lm_eval") if m in sys.modules]
print("PROBE" + json.dumps({"rc": rc, "heavy": heavy}))
"""


def run_cli(*args: str, cwd: Path = REPO) -> tuple[dict[str, Any], str, str]:
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "LORA_SWEEP_CACHE": str(cwd / ".cache-test"),
        "HOME": str(cwd),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE"))
    return json.loads(line.removeprefix("PROBE")), done.stdout, done.stderr


@pytest.mark.parametrize(
    "verb",
    [
        None,
        "launch",
        "validate",
        "status",
        "best",
        "eval",
        "export",
        "promote",
        "compare",
        "ui",
        "data",
        "resume",
    ],
)
def test_help_imports_no_heavy_library(verb: str | None) -> None:
    probe, out, _ = run_cli(*([verb] if verb else []), "--help")
    assert probe["rc"] == 0 and probe["heavy"] == []
    assert "usage: sweep" in out


def test_validate_prints_the_resolved_config_without_torch() -> None:
    probe, out, _ = run_cli("validate", "search_spaces/lora.yaml")
    assert probe["rc"] == 0 and probe["heavy"] == []
    resolved = yaml.safe_load(out.split("# search space")[0])
    assert resolved["base_model"] == "smollm2-135m-instruct"
    assert resolved["training"]["micro_batch_size"] == 4
    lr = yaml.safe_load((REPO / "search_spaces/lora.yaml").read_text())["search_space"][
        "learning_rate"
    ]
    assert f"#   learning_rate: loguniform({lr['low']:g}, {lr['high']:g})" in out


def test_validate_reports_errors_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  train: x.jsonl\nsearch_space:\n  lora_r: []\n")
    probe, _, err = run_cli("validate", str(bad))
    assert probe["rc"] == 2 and probe["heavy"] == []
    assert (
        err.strip()
        == f"error: {bad}:4: search_space.lora_r: choice list is empty: give at least one value"
    )


def bad_input_cases(model: Path, tmp: Path) -> dict[str, tuple[dict[str, Any], str]]:
    rows = [{"instruction": f"i{i}", "input": "", "output": f'{{"k": {i}}}'} for i in range(8)]
    data = {
        "train": write_jsonl(tmp / "train.jsonl", rows),
        "heldout": write_jsonl(tmp / "held.jsonl", rows[:2]),
    }
    broken = write_jsonl(tmp / "broken.jsonl", [*rows[:4], {"instruction": "no answer"}, *rows[4:]])
    base = tiny_sweep_config(model, data, tmp)
    return {
        "unknown key": ({**base, "learning_rat": 0.1}, "learning_rat: unknown key 'learning_rat'"),
        "lr <= 0": (
            {**base, "search_space": {**base["search_space"], "learning_rate": 0}},
            "search_space.learning_rate: values must be > 0",
        ),
        "r not a positive integer": (
            {**base, "search_space": {**base["search_space"], "lora_r": [4, -2]}},
            "search_space.lora_r: values must be >= 1",
        ),
        "empty choice list": (
            {**base, "search_space": {**base["search_space"], "sequence_len": []}},
            "search_space.sequence_len: choice list is empty",
        ),
        "missing data file": (
            {**base, "data": {"train": str(tmp / "absent.jsonl")}},
            f"{tmp / 'absent.jsonl'}: data file not found",
        ),
        "row without response": (
            {**base, "data": {"train": str(broken), "heldout": str(data["heldout"])}},
            f"{broken}: row 5: missing field 'output'",
        ),
        "sequence_len too short": (
            {**base, "search_space": {**base["search_space"], "sequence_len": [8, 128]}},
            "search_space.sequence_len: 8 tokens cuts away the response of every training row",
        ),
        "unknown target module": (
            {**base, "training": {**base["training"], "lora_target_modules": ["q_proj", "query"]}},
            "training.lora_target_modules: query not found in",
        ),
        "unknown model id": (
            {**base, "base_model": "no-such-org/no-such-model"},
            "base_model 'no-such-org/no-such-model': not in the local Hugging Face cache",
        ),
    }


CASES = [
    "unknown key",
    "lr <= 0",
    "r not a positive integer",
    "empty choice list",
    "missing data file",
    "row without response",
    "sequence_len too short",
    "unknown target module",
    "unknown model id",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_rejected_before_ray_and_mlflow(
    case: str, tiny_model: Path, tmp_path: Path
) -> None:
    config, message = bad_input_cases(tiny_model, tmp_path)[case]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    probe, _, err = run_cli("launch", str(path), "--name", "bad", cwd=tmp_path)
    lines = [x for x in err.splitlines() if x.strip()]
    assert probe["rc"] == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "ray" not in probe["heavy"] and "mlflow" not in probe["heavy"]
    assert not (tmp_path / "mlruns").exists()  # nothing written to MLflow
    assert not (tmp_path / "sweeps" / "bad").exists()  # no half-made sweep
