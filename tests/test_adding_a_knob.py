"""CONTRIBUTING.md's worked example holds: a searchable knob is added by editing two files.

The diff is read from CONTRIBUTING.md and applied to a copy of the code. mypy --strict passes on
the result and fails on a misspelt read of the knob; a YAML search over it is validated against
the field, sampled by Optuna, typed at the trial's boundary and reaches the trainer (NEFTune's
noise on the embeddings while training).
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
    (root / "pyproject.toml").write_text(
        (REPO / "pyproject.toml").read_text() + THIRD_PARTY_SKIPPED
    )
    diff = root / "knob.diff"
    diff.write_text(contributing_diff())
    subprocess.run(["git", "apply", "--verbose", str(diff)], cwd=root, check=True,
                   capture_output=True, text=True)  # fmt: skip
    return root


def test_the_example_touches_two_files() -> None:
    files = re.findall(r"^\+\+\+ b/(\S+)", contributing_diff(), re.M)
    assert sorted(files) == ["trainers/config.py", "trainers/lora_trial.py"]


# The knob's path, schema to trainer, is the project's own code: mypy reads the third-party
# packages it passes through as untyped (analysing torch's and transformers' types is most of a
# cold mypy run, a minute on 2 cores), and checks ours as `make quality` does.
THIRD_PARTY_SKIPPED = """
[[tool.mypy.overrides]]
module = ["torch", "torch.*", "transformers", "transformers.*", "peft", "peft.*"]
follow_imports = "skip"
"""


def mypy(root: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict with pyproject's settings on trainers/, where the knob is declared and read,
    and what it imports (evals/); sweeps/ reads no knob by name."""
    return subprocess.run([sys.executable, "-m", "mypy", "-p", "trainers"], cwd=root,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def test_mypy_follows_the_knob_from_schema_to_trainer(patched_tree: Path, tmp_path: Path) -> None:
    clean = mypy(patched_tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    typo = tmp_path / "typo"
    shutil.copytree(patched_tree, typo)
    trainer = typo / "trainers/lora_trial.py"
    read = trainer.read_text()
    assert read.count("hparams.neftune_noise_alpha") == 2
    trainer.write_text(read.replace("hparams.neftune_noise_alpha", "hparams.neftune_noise_alhpa"))
    failed = mypy(typo)
    assert failed.returncode == 1
    assert re.search(r'lora_trial\.py:\d+: error: "Hyperparameters" has no attribute '
                     r'"neftune_noise_alhpa"', failed.stdout), failed.stdout  # fmt: skip


PROBE = """
import json, sys
import optuna, torch
from sweeps.config import ConfigError, DataConfig, config_from_dict
from sweeps.search.space import define_by_run, distributions
from trainers.config import Hyperparameters
from trainers.lora_trial import build_lora_model
from trainers.spec import TrialSpec

model, train = sys.argv[1], sys.argv[2]
raw = {"data": {"train": train}, "training": {"lora_target_modules": ["q_proj", "v_proj"]},
       "search_space": {"lora_r": 4, "neftune_noise_alpha": [0, 15]}}
config = config_from_dict(raw)
try:
    config_from_dict({**raw, "search_space": {"neftune_noise_alpha": -1}})
    refused = ""
except ConfigError as exc:
    refused = str(exc)
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
knobs = {}
for _ in range(12):  # as Ray's trial config: Optuna's params and the derived values, one dict
    trial = study.ask()
    derived = define_by_run(config)(trial)
    flat = {**trial.params, **derived}
    knob = Hyperparameters.from_trial(flat, training=config.training)
    knobs[knob.neftune_noise_alpha] = knob
    study.tell(trial, 0.0)
spec = TrialSpec(model_path=model, data=DataConfig(train=train, task_metric="exact_match"),
                 training=config.training)
ids = torch.tensor([[1, 2, 3, 4, 5]])
noisy = {}
for alpha, knob in sorted(knobs.items()):
    lora = build_lora_model(spec, knob)
    embeddings = lora.get_input_embeddings()
    lora.train()
    training = not torch.equal(embeddings(ids), embeddings(ids))
    lora.eval()
    noisy[str(alpha)] = [training, not torch.equal(embeddings(ids), embeddings(ids))]
print(json.dumps({"sampled": sorted(knobs), "refused": refused, "noisy": noisy,
                  "distribution": type(distributions(config)["neftune_noise_alpha"]).__name__}))
"""


def test_a_yaml_search_reaches_the_trainer(
    patched_tree: Path, tiny_model: Path, small_data: dict[str, Path]
) -> None:
    """search_space.neftune_noise_alpha: [0, 15] is checked against the field's bounds, sampled
    by a real Optuna study as a categorical, typed at the trial's boundary, and reaches the
    trainer: noise on the embeddings while training at 15, none at 0, none at evaluation."""
    env = {**os.environ, "PYTHONPATH": str(patched_tree)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tiny_model),
                           str(small_data["train"])], cwd=patched_tree, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["sampled"] == [0.0, 15.0]
    assert seen["distribution"] == "CategoricalDistribution"
    assert "search_space.neftune_noise_alpha: values must be >= 0, got -1" in seen["refused"]
    assert seen["noisy"] == {"0.0": [False, False], "15.0": [True, False]}
