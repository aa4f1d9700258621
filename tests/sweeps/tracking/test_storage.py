"""Ray's storage on a local disk: a writer killed mid-file leaves the previous file whole (Ray's
own local filesystem leaves it empty, which made tuner.pkl unreadable after a driver kill)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.fs
import pytest

from sweeps.config import ConfigError
from sweeps.tracking.storage import (
    is_local,
    set_aside_damaged_state,
    storage_for,
    whole_file_filesystem,
)
from tests.conftest import REPO

# Rewrite the file through the filesystem, then die with half of it written and the stream open.
KILLED_WRITER = """
import os, signal, sys
import pyarrow.fs
from sweeps.tracking.storage import whole_file_filesystem
fs = whole_file_filesystem() if sys.argv[2] == "whole" else pyarrow.fs.LocalFileSystem()
stream = fs.open_output_stream(sys.argv[1])
stream.write(b"new" * 100_000)
stream.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_rewrite(path: Path, filesystem: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), filesystem], env=env)
    assert done.returncode == -9


@pytest.mark.parametrize(("filesystem", "survives"), [("whole", True), ("pyarrow-local", False)])
def test_a_writer_killed_mid_file_leaves_the_previous_file(
    tmp_path: Path, filesystem: str, survives: bool
) -> None:
    target = tmp_path / "tuner.pkl"
    target.write_bytes(pickle.dumps({"state": "old"}))
    killed_rewrite(target, filesystem)
    if survives:
        assert pickle.loads(target.read_bytes()) == {"state": "old"}
        partial, kept = sorted(p.name for p in tmp_path.iterdir())  # the dead writer's file
        assert partial.startswith(".tuner.pkl.partial-") and kept == "tuner.pkl"
    else:  # the failure this filesystem exists for: the truncated file Ray cannot load
        with pytest.raises((EOFError, pickle.UnpicklingError)):
            pickle.loads(target.read_bytes())


def test_a_completed_write_replaces_the_file_whole(tmp_path: Path) -> None:
    filesystem = pickle.loads(pickle.dumps(whole_file_filesystem()))  # as Ray ships it to workers
    target = tmp_path / "nested" / "state.json"
    for content in (b"first", b"second, longer than the first"):
        with filesystem.open_output_stream(str(target)) as stream:
            stream.write(content)
        assert target.read_bytes() == content
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # no partial left behind
    source = tmp_path / "checkpoint"
    (source / "adapter").mkdir(parents=True)
    (source / "adapter" / "weights").write_bytes(os.urandom(4096))
    pyarrow.fs.copy_files(str(source), str(tmp_path / "copy"), destination_filesystem=filesystem)
    assert (tmp_path / "copy" / "adapter" / "weights").read_bytes() == (
        source / "adapter" / "weights"
    ).read_bytes()


def test_local_locations_get_whole_file_writes(tmp_path: Path) -> None:
    for location in (str(tmp_path / "ray"), f"file://{tmp_path}/ray"):
        path, filesystem = storage_for(location)
        assert path == str(tmp_path / "ray")
        assert filesystem is not None and is_local(filesystem)
    assert is_local(pyarrow.fs.LocalFileSystem())
    assert not is_local(pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem()))


def test_an_upload_of_a_half_rewritten_state_file_keeps_the_whole_one(tmp_path: Path) -> None:
    """Ray uploads its staging directory in a background thread while the next save rewrites
    those files in place: an upload can copy half of one (the resume test's driver kills found
    a cut experiment_state-*.json, and Ray then silently restarted the experiment from zero)."""
    filesystem = whole_file_filesystem()
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    staging.mkdir()
    documents = {
        "experiment_state-1.json": json.dumps({"trial_data": [["t1", "RUNNING"]] * 50}).encode(),
        "searcher-state-1.pkl": json.dumps(
            {"study_trials": {f"t{i}": i for i in range(500)}}
        ).encode(),  # the sweep's searcher saves JSON under Ray's name
        "tuner.pkl": pickle.dumps({"param_space": {"lr": [1e-4, 1e-3]}}),
    }
    generator = {"search_gen_state-1.json": pickle.dumps({"counter": 3})}  # Ray pickles it
    for name, data in {**documents, **generator}.items():  # the last upload: whole files
        (staging / name).write_bytes(data)
    pyarrow.fs.copy_files(str(staging), str(storage), destination_filesystem=filesystem)
    for name, data in documents.items():  # the next save, caught halfway by the next upload
        (staging / name).write_bytes(data[: len(data) // 2])
    pyarrow.fs.copy_files(str(staging), str(storage), destination_filesystem=filesystem)

    held = {p.name: p.read_bytes() for p in storage.iterdir()}
    assert held == {**documents, **generator}  # no partial file left
    results = b'{"step": 1}\n{"step": 2}\n'  # result.json is JSON lines, uploaded as it is
    with filesystem.open_output_stream(str(storage / "result.json")) as stream:
        stream.write(results)
    assert (storage / "result.json").read_bytes() == results


def test_a_cut_newest_experiment_state_is_set_aside_for_the_one_before(tmp_path: Path) -> None:
    """Given an unreadable newest experiment_state-*.json, Ray logs an error and silently starts
    the experiment again from zero; the resume sets it aside, and Ray takes the one before."""
    whole = json.dumps({"trial_data": []})
    (tmp_path / "experiment_state-2026-01-01_10-00-00.json").write_text(whole)
    (tmp_path / "experiment_state-2026-01-01_11-00-00.json").write_text(whole[:9])
    assert set_aside_damaged_state(str(tmp_path)) == ["experiment_state-2026-01-01_11-00-00.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".damaged-experiment_state-2026-01-01_11-00-00.json",
        "experiment_state-2026-01-01_10-00-00.json",
    ]
    assert set_aside_damaged_state(str(tmp_path)) == []  # the newest is whole now
    (tmp_path / "experiment_state-2026-01-01_10-00-00.json").write_text(whole[:9])
    with pytest.raises(ConfigError, match=r"every experiment_state-\*\.json is cut short"):
        set_aside_damaged_state(f"file://{tmp_path}")
