"""CONTRIBUTING.md's worked example holds: a training knob is added by editing two files.

The diff is read from CONTRIBUTING.md and applied to a copy of the code. mypy --strict passes on
the result and fails on a misspelt read of the knob; a YAML setting reaches PEFT's LoraConfig.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeps", "trainers", "evals")


def contributing_diff() -> str:
    text = (REPO / "CONTRIBUTING.md").read_text()
    match = re.search(r"```diff\n(.*?)```", text, re.S)
    assert match, "CONTRIBUTING.md has no diff block"
    return match.group(1)


@pytest.fixture(scope="module")
def patched_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the packages (and the mypy settings) with the worked example applied."""
    root = tmp_path_factory.mktemp("knob")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    if (REPO / ".mypy_cache").is_dir():  # only speeds mypy up: it rechecks what changed
        shutil.copytree(REPO / ".mypy_cache", root / ".mypy_cache")
    diff = root / "knob.diff"
    diff.write_text(contributing_diff())
    subprocess.run(["git", "apply", "--verbose", str(diff)], cwd=root, check=True,
                   capture_output=True, text=True)  # fmt: skip
    return root


def test_the_example_touches_two_files() -> None:
    files = re.findall(r"^\+\+\+ b/(\S+)", contributing_diff(), re.M)
    assert sorted(files) == ["sweeps/config.py", "trainers/lora_trial.py"]


def mypy(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy"], cwd=root, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


def test_mypy_follows_the_knob_from_schema_to_trainer(patched_tree: Path, tmp_path: Path) -> None:
    clean = mypy(patched_tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    typo = tmp_path / "typo"
    shutil.copytree(patched_tree, typo)
    trainer = typo / "trainers/lora_trial.py"
    trainer.write_text(trainer.read_text().replace("training.use_rslora", "training.use_rs_lora"))
    failed = mypy(typo)
    assert failed.returncode == 1
    assert re.search(r'lora_trial\.py:\d+: error: "TrainingConfig" has no attribute '
                     r'"use_rs_lora"', failed.stdout), failed.stdout  # fmt: skip


PROBE = """
import json, sys
from sweeps.config import DataConfig, config_from_dict
from trainers.lora_trial import build_lora_model
from trainers.spec import TrialSpec

model, train = sys.argv[1], sys.argv[2]
config = config_from_dict({"data": {"train": train}, "training": {"use_rslora": True}})
spec = TrialSpec(model_path=model, data=DataConfig(train=train, task_metric="exact_match"),
                 training=config.training)
hparams = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
lora = build_lora_model(spec, hparams)
from peft.tuners.lora import LoraLayer
layer = next(m for m in lora.modules() if isinstance(m, LoraLayer))
print(json.dumps({"use_rslora": lora.peft_config["default"].use_rslora,
                  "scaling": layer.scaling["default"]}))
"""


def test_a_yaml_setting_reaches_peft(
    patched_tree: Path, tiny_model: Path, small_data: dict[str, Path]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(patched_tree)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tiny_model), str(small_data["train"])],
                          cwd=patched_tree, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["use_rslora"] is True
    assert seen["scaling"] == pytest.approx(8 / 4**0.5)  # alpha/sqrt(r), not alpha/r = 2
