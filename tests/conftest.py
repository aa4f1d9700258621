"""Shared fixtures: a tiny 2-layer Llama with a tokenizer trained here, and small data files.

Everything is built in-process (no network): the fast tier drives real PEFT, Ray Tune, Optuna and
MLflow on a model that trains in well under a second per step.
"""

from __future__ import annotations

import filecmp
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "notes_to_json"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_model(directory: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """Train a byte-level BPE tokenizer on the embedded data and save a 2-layer Llama beside it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [
        line
        for name in ("train.jsonl", "heldout.jsonl")
        for line in (DATA / name).read_text().splitlines()
    ]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model_plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model, but its tokenizer has no chat template (Alpaca template applies)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-plain"), chat_template=False)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def slice_embedded_data(directory: Path, *, train: int | None, heldout: int) -> dict[str, Path]:
    """The first rows of the embedded dataset, written as train.jsonl and heldout.jsonl."""
    rows = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines()[:train]]
    held = [json.loads(x) for x in (DATA / "heldout.jsonl").read_text().splitlines()[:heldout]]
    return {"train": write_jsonl(directory / "train.jsonl", rows),
            "heldout": write_jsonl(directory / "heldout.jsonl", held)}  # fmt: skip


@pytest.fixture
def small_data(tmp_path: Path) -> dict[str, Path]:
    """48 train and 12 held-out rows of the embedded task (enough for a few steps)."""
    return slice_embedded_data(tmp_path, train=48, heldout=12)


@functools.cache
def migrated_mlflow_store() -> Path:
    """An empty MLflow sqlite store at the newest schema, made once per test process: a tiny
    sweep's store starts as a copy of it (a fresh store runs MLflow's alembic migrations, about
    2 s each time). The sweeps that `sweep init`, the CLI and the demo start make their own."""
    from mlflow.tracking import MlflowClient

    store = Path(tempfile.mkdtemp(prefix="lora-sweep-mlflow-")) / "mlflow.db"
    MlflowClient(f"sqlite:///{store}").search_experiments()  # creates the tables
    return store


def nothing_reached_mlflow(directory: Path) -> bool:
    """No MLflow store under ``directory/mlruns``, or only the empty one tiny_sweep_config copied
    there, byte for byte: no experiment, run or tag was written."""
    mlruns = directory / "mlruns"
    files = sorted(p for p in mlruns.rglob("*") if p.is_file()) if mlruns.exists() else []
    if not files:
        return True
    return files == [mlruns / "mlflow.db"] and filecmp.cmp(
        files[0], migrated_mlflow_store(), shallow=False
    )


def tiny_sweep_config(
    model: Path, data: dict[str, Path], tmp_path: Path, **overrides: Any
) -> dict[str, Any]:
    """A sweep config for the tiny model that finishes in seconds per trial (its MLflow store a
    copy of an empty one already migrated)."""
    store = tmp_path / "mlruns" / "mlflow.db"
    if not store.exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(migrated_mlflow_store(), store)
    config: dict[str, Any] = {
        "name": "tiny",
        "base_model": str(model),
        # the fast tier's data is a few rows: fewer than a real sweep needs (docs/data.md, Too little data)
        "data": {"train": str(data["train"]), "heldout": str(data["heldout"]), "allow_small": True},
        "search_space": {
            "learning_rate": {"type": "loguniform", "low": 1e-3, "high": 1e-2},
            "lora_r": [2, 4],
            "lora_alpha": {"type": "ratio_of_r", "values": [1, 2]},
            "num_epochs": {"type": "int", "low": 1, "high": 2},
            "sequence_len": [128],
        },
        "training": {"micro_batch_size": 4, "evals_per_epoch": 2, "seed": 1},
        "search": {"algorithm": "tpe", "num_samples": 4, "max_concurrent": 2, "seed": 3},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpu": 1, "gpu": 0},
        "tracking": {
            "mlflow_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
            "experiment": "tiny",
            "state_dir": str(tmp_path / "sweeps"),
        },
        "evaluation": {"max_new_tokens": 8, "batch_size": 12, "logged_generations": 3},
    }
    for key, value in overrides.items():
        if key != "scheduler" and isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that need a Ray of their own (``own_ray``) run last: the shared Ray the others
    join is stopped once for them, not stopped and started again around each."""
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is not None)


def pytest_addoption(parser: pytest.Parser) -> None:
    chaos = parser.getgroup(
        "chaos", "fault injection (tests/sweeps/tune/test_chaos.py, driver/test_resume.py)"
    )
    chaos.addoption("--chaos-sweeps", type=int, default=1,
                    help="sweeps of eight trials at once whose workers are SIGKILLed at random "
                    "moments, four kills each (default 1; a long run: 30)")  # fmt: skip
    chaos.addoption("--driver-kills", type=int, default=4,
                    help="stops of the sweep's driver before the resume that finishes it: three "
                    "at set moments (one a Ctrl-C), the rest at random moments (default 4)")  # fmt: skip
    chaos.addoption("--chaos-seed", type=int, default=None,
                    help="seed of the random kills (default: a fresh one, printed)")  # fmt: skip


@pytest.fixture(scope="session")
def chaos_seed(request: pytest.FixtureRequest) -> int:
    """The kills' seed: --chaos-seed, else a fresh one; failures name it to replay them."""
    import random

    seed = request.config.getoption("--chaos-seed")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    print(f"\nchaos tests: --chaos-seed {seed}")
    return int(seed)


@pytest.fixture(autouse=True)
def _isolated_cache(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fast tests cache base scores in a temp dir; integration tests share the machine's cache
    (the SmolLM2 conversion is done once per machine, as for users)."""
    if "LORA_SWEEP_CACHE" not in os.environ and not request.node.get_closest_marker("integration"):
        monkeypatch.setenv("LORA_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
