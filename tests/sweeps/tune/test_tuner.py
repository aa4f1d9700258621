"""A sweep saved before a module moved still resumes: Ray's tuner.pkl and experiment state name
the objects they pickled (a Goal, the storage handler) by the module they lived in then.

A sweep killed under the version before the move (commit 1285dc6: sweeps.pareto, sweeps._storage)
was resumed by hand to the end with this one; this test keeps the names it needed findable.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

from sweeps.search.pareto import Goal
from sweeps.tracking.storage import WholeFileHandler
from sweeps.tune.tuner import MOVED_MODULES
from tests.conftest import REPO

LOAD = """
import pickle, sys
data = bytes.fromhex(sys.argv[1])
try:
    pickle.loads(data)
except ModuleNotFoundError as exc:
    print("before:", exc.name)
from sweeps.tune.tuner import _find_moved_modules
_find_moved_modules()
print("after:", type(pickle.loads(data)).__name__)
"""


def saved_before_the_move(thing: object, *, old: str) -> bytes:
    """``thing`` pickled as a sweep saved before its module moved: under ``old``."""
    new = type(thing).__module__
    assert MOVED_MODULES[old] == new
    data = pickle.dumps(thing, protocol=1)  # names each class as "c<module>\\n<name>\\n"
    assert f"c{new}\n".encode() in data
    return data.replace(f"c{new}\n".encode(), f"c{old}\n".encode())


def test_a_sweep_saved_before_its_modules_moved_unpickles_after() -> None:
    for thing, old in (
        (Goal("heldout/loss", "min"), "sweeps.pareto"),
        (WholeFileHandler(), "sweeps._storage"),
    ):
        data = saved_before_the_move(thing, old=old)
        run = subprocess.run(
            [sys.executable, "-c", LOAD, data.hex()],
            cwd=REPO,
            text=True,
            capture_output=True,
            check=True,
        )
        assert run.stdout.splitlines() == [f"before: {old}", f"after: {type(thing).__name__}"]
