"""Ray's storage on a local disk, with writes that replace a file whole or not at all.

Ray keeps a Tune experiment's state (``tuner.pkl``, ``experiment_state-*.json``, the searcher's
state) in a staging directory and re-uploads it to the storage path every few seconds by
truncating and rewriting each file. A driver killed during an upload leaves ``tuner.pkl`` empty,
and the sweep can never be resumed (``EOFError: Ran out of input`` in ``Tuner.restore``; found by
tests/sweeps/driver/test_resume.py, reported upstream as ray-project/ray#58179). On a local path or a
shared mount the sweep gives Ray this filesystem instead: each file is written beside its target
under a hidden name and renamed over it when complete, so a reader sees the old file or the new
one. Object stores (s3://, gs://) already publish an object whole, and keep Ray's own filesystem.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import pickletools
import uuid
from collections.abc import Callable
from typing import NoReturn

import fsspec
import pyarrow
import pyarrow.fs

from sweeps.config import ConfigError

# Tune's experiment state: JSON, rewritten in place by every save (Ray pickles its
# search_gen_state-*.json and writes it, like the searcher's state, by renaming a whole file;
# result.json is JSON lines).
EXPERIMENT_STATE = "experiment_state-*.json"
# The sweep's searcher saves its progress as JSON under Ray's name for the file
# (sweeps/tune/searcher.py)
SEARCHER_STATE = "searcher-state-*.pkl"


def _pickle_whole(data: bytes) -> bool:
    """Whether the pickle's opcodes run to STOP (read with pickletools, never unpickled)."""
    try:
        for _ in pickletools.genops(data):
            pass
    except Exception:  # ValueError at a cut before STOP; other errors inside an opcode
        return False
    return True


def _json_whole(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def wholeness_check(name: str) -> Callable[[bytes], bool] | None:
    """How a Tune state file is checked before it is published (None: other files, checkpoints
    among them, are published as written; they carry a manifest)."""
    if fnmatch.fnmatch(name, SEARCHER_STATE):
        return _json_whole
    if fnmatch.fnmatch(name, "*.pkl"):
        return _pickle_whole
    if fnmatch.fnmatch(name, EXPERIMENT_STATE):
        return _json_whole
    return None


def is_complete(name: str, data: bytes) -> bool:
    """Whether a file holds a whole document (files that are not checked count as whole)."""
    check = wholeness_check(name)
    return check is None or check(data)


class _WholeFile(io.FileIO):
    """A file written under a hidden partial name; closing it syncs it and renames it over the
    target. A writer killed before then leaves the target as it was, and so does a Tune state
    file that is not whole: Ray uploads its staging directory in a background thread while the
    next save rewrites those files in place, so an upload can copy half of one (the next upload
    copies it whole)."""

    def __init__(self, target: str) -> None:
        head, name = os.path.split(target)
        os.makedirs(head or ".", exist_ok=True)
        self.target = target
        self.partial = os.path.join(head, f".{name}.partial-{uuid.uuid4().hex[:12]}")
        super().__init__(self.partial, "w")

    def close(self) -> None:
        if self.closed:
            return
        os.fsync(self.fileno())
        super().close()
        check = wholeness_check(os.path.basename(self.target))
        if check is not None:  # small state files only: checkpoint weights are not read back
            with open(self.partial, "rb") as written:
                if not check(written.read()):
                    os.remove(self.partial)
                    return
        os.replace(self.partial, self.target)


class WholeFileHandler(pyarrow.fs.FSSpecHandler):  # type: ignore[misc]
    """The local filesystem, except that an output stream replaces its file whole on close."""

    def __init__(self) -> None:
        super().__init__(fsspec.filesystem("file"))

    def __reduce__(self) -> tuple[type[WholeFileHandler], tuple[()]]:
        return (WholeFileHandler, ())  # Ray ships the filesystem to every trial's worker

    def get_type_name(self) -> str:
        return "local (whole-file writes)"

    def open_output_stream(self, path: str, metadata: object) -> pyarrow.PythonFile:
        return pyarrow.PythonFile(_WholeFile(path), mode="w")

    def open_append_stream(self, path: str, metadata: object) -> NoReturn:
        raise NotImplementedError("appending cannot replace a file whole")


def whole_file_filesystem() -> pyarrow.fs.PyFileSystem:
    return pyarrow.fs.PyFileSystem(WholeFileHandler())


def filesystem_and_path(location: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The pyarrow filesystem and path of a local path or a URI (s3://, gs://, file://)."""
    if "://" in location:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
        return filesystem, str(path)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(location)


def storage_for(location: str) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """Ray's (storage path, filesystem) for a local path or URI: local paths and file:// URIs get
    whole-file writes; other URIs keep the filesystem Ray picks for them (None)."""
    filesystem, path = filesystem_and_path(location)
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        return path, whole_file_filesystem()
    return location, None


def is_local(filesystem: pyarrow.fs.FileSystem) -> bool:
    """Whether paths on this filesystem are paths on this machine's disk."""
    if isinstance(filesystem, pyarrow.fs.PyFileSystem):
        return isinstance(filesystem.handler, WholeFileHandler)
    return isinstance(filesystem, pyarrow.fs.LocalFileSystem)


def set_aside_damaged_state(experiment: str) -> list[str]:
    """Rename cut experiment_state-*.json files, newest first, until the newest one is whole, so
    Ray resumes from the last whole state (given an unreadable newest file, Ray logs an error and
    silently starts the experiment again from zero). Returns the names set aside."""
    filesystem, path = filesystem_and_path(experiment)
    selector = pyarrow.fs.FileSelector(path, allow_not_found=True)
    names = sorted(
        (
            i.base_name
            for i in filesystem.get_file_info(selector)
            if fnmatch.fnmatch(i.base_name, EXPERIMENT_STATE)
        ),
        reverse=True,
    )
    damaged = []
    for name in names:
        with filesystem.open_input_stream(f"{path}/{name}") as stream:
            if is_complete(name, stream.readall()):
                break
        filesystem.move(f"{path}/{name}", f"{path}/.damaged-{name}")
        damaged.append(name)
    if names and len(damaged) == len(names):
        raise ConfigError(
            f"{experiment}: every experiment_state-*.json is cut short ("
            f"{', '.join(damaged)}, now named .damaged-*); Ray cannot resume it"
        )
    return damaged
