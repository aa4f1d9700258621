"""CONTRIBUTING.md's worked example holds: a training knob is added by editing two files.

The diff is read from CONTRIBUTING.md and applied to a copy of the code. mypy --strict passes on
the result and fails on a misspelt read of the knob; a YAML setting reaches PEFT (the biases it
names train and are saved with the adapter).
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
    read = trainer.read_text()
    assert read.count("training.trained_biases") == 1
    trainer.write_text(read.replace("training.trained_biases", "training.trained_biasses"))
    failed = mypy(typo)
    assert failed.returncode == 1
    assert re.search(r'lora_trial\.py:\d+: error: "TrainingConfig" has no attribute '
                     r'"trained_biasses"', failed.stdout), failed.stdout  # fmt: skip


PROBE = """
import json, sys
from peft import get_peft_model_state_dict
from sweeps.config import DataConfig, config_from_dict
from trainers.lora_trial import build_lora_model
from trainers.spec import TrialSpec

model, train, biases = sys.argv[1], sys.argv[2], sys.argv[3]
config = config_from_dict({"data": {"train": train}, "training": {"trained_biases": biases,
                                  "lora_target_modules": ["q_proj", "v_proj"]}})
spec = TrialSpec(model_path=model, data=DataConfig(train=train, task_metric="exact_match"),
                 training=config.training)
hparams = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
lora = build_lora_model(spec, hparams)
print(json.dumps({"bias": lora.peft_config["default"].bias,
                  "biases": sorted(n for n, _ in lora.named_parameters() if n.endswith(".bias")),
                  "trained": sorted(n for n, p in lora.named_parameters() if p.requires_grad
                                    and "lora_" not in n),
                  "saved": sorted(k for k in get_peft_model_state_dict(lora) if "lora_" not in k)}))
"""


@pytest.fixture(scope="module")
def biased_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with biases on its attention projections (q, k, v, o; fresh zeros)."""
    model = tmp_path_factory.mktemp("biased") / "model"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "attention_bias": True}))
    return model


@pytest.mark.parametrize("biases", ["all", "lora_only"])
def test_a_yaml_setting_reaches_peft(
    patched_tree: Path, biased_model: Path, small_data: dict[str, Path], biases: str
) -> None:
    """PEFT's bias: "all" trains (and saves with the adapter) every bias of the model,
    "lora_only" those of the adapted layers (q_proj and v_proj); the base weights stay frozen."""
    env = {**os.environ, "PYTHONPATH": str(patched_tree)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(biased_model),
                           str(small_data["train"]), biases], cwd=patched_tree, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["bias"] == biases
    assert len(seen["biases"]) == 2 * 4  # two layers' q, k, v and o projections
    adapted = [n for n in seen["biases"] if ".q_proj." in n or ".v_proj." in n]
    expected = seen["biases"] if biases == "all" else adapted
    assert len(adapted) == 2 * 2 and seen["trained"] == expected  # no other base weight trains
    assert seen["saved"] == expected  # the trained biases are saved with the adapter
