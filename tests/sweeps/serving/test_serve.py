"""What ``sweep serve`` serves, how it names it, and the vLLM command it hands over to (the
server itself, called through the openai client, is in test_judge.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sweeps.cli.main import main
from sweeps.config import ConfigError
from sweeps.serving.serve import resolve_served, serve, split_named, vllm_command
from tests.trainers.test_chat import random_adapter


@pytest.fixture(scope="module")
def adapters(
    tiny_model: Path, tiny_model_plain: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("serve-adapters")
    return {"one": random_adapter(tiny_model, tmp / "one", seed=1),
            "two": random_adapter(tiny_model, tmp / "two", seed=2),
            "other-base": random_adapter(tiny_model_plain, tmp / "other", seed=3)}  # fmt: skip


def resolve(*refs: str, tmp_path: Path, base_model: str | None = None) -> object:
    return resolve_served(refs, state_dir=tmp_path / "sweeps", mlflow_uri="sqlite:///unused.db",
                          base_model=base_model)  # fmt: skip


def test_adapters_are_served_by_name_on_their_one_base(
    adapters: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    served = resolve(f"first={adapters['one']}", str(adapters["two"]), "base", tmp_path=tmp_path)
    assert served.names == ["base", "first", "two"]  # a directory is named by its last part
    assert served.base == tiny_model.resolve()
    command = vllm_command(served, host="127.0.0.1", port=8000)
    assert command[:3] == ["vllm", "serve", str(tiny_model.resolve())]
    assert "--enable-lora" in command and f"first={adapters['one']}" in command
    assert command[command.index("--max-lora-rank") + 1] == "16"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    wide = tmp_path / "wide"
    shutil.copytree(adapters["one"], wide)
    config = json.loads((wide / "adapter_config.json").read_text())
    (wide / "adapter_config.json").write_text(json.dumps({**config, "r": 24}))
    command = vllm_command(resolve(str(wide), tmp_path=tmp_path), host="127.0.0.1", port=1)
    assert command[command.index("--max-lora-rank") + 1] == "32"  # vLLM's next allowed rank


def test_what_cannot_be_served_is_refused_in_one_line(
    adapters: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    refusals = {
        "different base models": (str(adapters["one"]), str(adapters["other-base"])),
        "needs --base-model": ("base",),
        "is taken": (f"x={adapters['one']}", f"x={adapters['two']}"),
        "'base' is taken": (f"base={adapters['one']}",),
    }
    for words, refs in refusals.items():
        with pytest.raises(ConfigError, match=words) as refused:
            resolve(*refs, tmp_path=tmp_path)
        assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="a served name"):
        split_named("two words=x")
    alone = resolve("base", tmp_path=tmp_path, base_model=str(tiny_model))
    assert alone.adapters == {} and alone.base == tiny_model.resolve()


def test_vllm_on_a_machine_without_it_prints_the_command_and_a_missing_key_is_refused(
    adapters: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    served = resolve(f"one={adapters['one']}", tmp_path=tmp_path)
    with pytest.raises(ConfigError, match=r"vllm serve .* --enable-lora"):
        serve(served, engine="vllm")
    with pytest.raises(ConfigError, match="exposes the models to the network"):
        serve(served, host="0.0.0.0", engine="transformers")
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    code = main(["serve", str(adapters["one"]), "--api-key-env", "NO_SUCH_KEY_VAR",
                 "--state-dir", str(tmp_path)])  # fmt: skip
    assert code == 2 and "NO_SUCH_KEY_VAR: the variable is not set" in capsys.readouterr().err
