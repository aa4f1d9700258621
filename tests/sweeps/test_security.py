"""One test per security default (docs/security.md):

- servers bind to 127.0.0.1 unless configured: ``test_servers_bind_to_loopback_unless_asked``,
  plus test_ui.py, which reads the socket table of a running ``sweep ui``;
- ``yaml.safe_load`` only: ``test_yaml_is_read_with_safe_load_only``;
- no pickles from files: ``test_no_pickle_is_loaded_from_a_checkpoint_or_a_data_file``;
- ``trust_remote_code`` off unless the YAML says so: ``test_a_model_with_its_own_code_...``;
- secrets never logged: ``test_secrets_and_uri_passwords_never_reach_mlflow``;
- names cannot escape: ``test_names_cannot_escape_their_directories``;
- artefact paths checked the same way: ``test_artifact_paths_cannot_escape_the_run``.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from sweeps.cli.main import build_parser
from sweeps.config import ConfigError, check_safe_name, load_config
from sweeps.tracking.artifact_paths import checked_artifact_path
from sweeps.tracking.mlflow_facade import SweepTracker
from sweeps.tracking.provenance import provenance_tags
from sweeps.tracking.state import sweep_directory
from sweeps.tracking.ui import ui_command
from tests.conftest import REPO, nothing_reached_mlflow, slice_embedded_data, tiny_sweep_config
from tests.sweeps.conftest import refused_launch
from tests.trainers.test_lora_trial import HPARAMS, make_spec
from trainers.checkpoint import ADAPTER_DIR, TENSORS_FILE, load_checkpoint
from trainers.data import load_examples
from trainers.data_readers import DataError
from trainers.lora_trial import setup

SOURCES = [
    p for d in ("sweeps", "trainers", "evals", "data", "perf") for p in (REPO / d).rglob("*.py")
]


def source_lines(pattern: str) -> list[str]:
    """``file:line: text`` of every source line matching ``pattern``."""
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return found


def test_servers_bind_to_loopback_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").touch()
    command = ui_command(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert build_parser().parse_args(["ui"]).host == "127.0.0.1"
    assert not source_lines(r"0\.0\.0\.0['\"]\s*[,)]")  # no server given 0.0.0.0 in code


def test_yaml_is_read_with_safe_load_only(tmp_path: Path) -> None:
    """A python/object tag constructs nothing; and no module calls a loader that could."""
    marker = tmp_path / "pwned"
    path = tmp_path / "sweep.yaml"
    path.write_text(f"data: {{train: x.jsonl}}\nname: !!python/object/apply:os.system "
                    f"['touch {marker}']\n")  # fmt: skip
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert not marker.exists()
    unsafe = source_lines(r"yaml\.(load|unsafe_load|full_load|load_all)\(|Loader=yaml\.(?!Safe)")
    assert not unsafe, unsafe


class Payload:
    """Unpickling this would create a file: what a planted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_no_pickle_is_loaded_from_a_checkpoint_or_a_data_file(
    tiny_model: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    recipe = setup(make_spec(tiny_model, small_data), HPARAMS)
    checkpoint, marker = tmp_path / "checkpoint", tmp_path / "pwned"
    recipe.model.save_pretrained(checkpoint / ADAPTER_DIR)
    torch.save({"optimizer": Payload(marker)}, checkpoint / TENSORS_FILE)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(recipe, checkpoint)
    assert not marker.exists()  # torch.load(weights_only=True) refused the object

    planted = tmp_path / "rows.pkl"
    planted.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(DataError, match=re.escape("unsupported file type '.pkl'")):
        load_examples(planted)
    assert not marker.exists()
    loads = source_lines(r"pickle\.loads?\(|read_pickle|joblib\.load|allow_pickle=True|dill\.")
    unsafe_torch = [x for x in source_lines(r"torch\.load\(") if "weights_only=True" not in x]
    assert not loads and not unsafe_torch, loads + unsafe_torch


def test_a_model_with_its_own_code_is_refused_unless_the_yaml_trusts_it(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, marker = tmp_path / "remote-model", tmp_path / "pwned"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    data = slice_embedded_data(tmp_path, train=8, heldout=2)
    sweep = tiny_sweep_config(model, data, tmp_path)
    path = tmp_path / "sweep.yaml"
    error = refused_launch(sweep, path, capsys)
    assert error.startswith(f"error: {path}: trust_remote_code: base_model {str(model)!r} ships "
                            "its own code (auto_map in config.json)"), error  # fmt: skip
    assert not marker.exists() and nothing_reached_mlflow(tmp_path)
    assert load_config(path).trust_remote_code is False
    path.write_text(yaml.safe_dump({**sweep, "trust_remote_code": True}))
    assert load_config(path).trust_remote_code is True  # only the YAML turns it on


def test_secrets_and_uri_passwords_never_reach_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "hf_" + "Q" * 34
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {"tracking": {"mlflow_uri": "postgresql://bob:hunter2@db:5432/mlflow"},
              "hf_token": token, "data": {"note": token, "train": "t.jsonl"},
              "benchmarks": {"api_key": "k-123456"}, "training": {"seed": 1}}  # fmt: skip
    tracker = SweepTracker(uri, "secrets")
    run_id = tracker.start_sweep("s", config=config, tags=provenance_tags(seeds={}, digests={}),
                                 artifacts={})  # fmt: skip
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    artifact = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path / "dl")))
    logged = json.dumps([run.data.params, run.data.tags]) + artifact.read_text()
    for secret in (token, "hunter2", "k-123456"):
        assert secret not in logged
    assert run.data.params["tracking.mlflow_uri"] == "postgresql://bob:***@db:5432/mlflow"
    assert run.data.params["training.seed"] == "1" and "hf_token" not in run.data.params
    assert yaml.safe_load(artifact.read_text())["hf_token"] == "***"


@pytest.mark.parametrize("name", ["../evil", "/abs/path", "a\x00b", "..", "a/b", "a\\b", ""])
def test_names_cannot_escape_their_directories(name: str, tmp_path: Path) -> None:
    for what in ("sweep name", "registered model name"):
        with pytest.raises(ConfigError, match=f"{what} .* must be"):
            check_safe_name(name, what=what)
    with pytest.raises(ConfigError):
        sweep_directory(tmp_path, name)
    assert not any(tmp_path.iterdir()) and check_safe_name("run-1.v2") == "run-1.v2"


@pytest.mark.parametrize("path", ["../up", "a/../../up", "/etc/x", "a\x00b", "a\\..\\b", ""])
def test_artifact_paths_cannot_escape_the_run(path: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(uri, "paths")
    run_id = tracker.start_sweep("s", config={}, tags={}, artifacts={})
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a")
    with pytest.raises(ConfigError, match="must stay inside the run's artifacts"):
        tracker.log_artifact_dirs(run_id, {path: files})
    with pytest.raises(ConfigError, match="must stay inside"):
        tracker._new_run("t", tags={}, params={}, artifacts={path: "text"})
    listed = {a.path for a in MlflowClient(uri).list_artifacts(run_id)}
    assert listed == {"config.yaml"}  # nothing beside what the run logged itself
    assert checked_artifact_path("report/curves.png") == "report/curves.png"
