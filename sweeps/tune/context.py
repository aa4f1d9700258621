"""What the driver holds while Ray runs its experiment, for the objects Ray pickles.

Ray pickles the recorder's callback and the searcher into its experiment state, and a resumed
driver gets unpickled copies: neither can carry the driver's live recorder (an MLflow client, a
console), nor which trials ``sweep rerun`` restarts. The tuner opens a ``DriverContext`` around
``Tuner.fit`` (``driving``) and it is closed when the fit ends, however it ends; outside one,
``active()`` raises instead of handing out a stale recorder.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweeps.tracking.recorder import SweepRecorder


@dataclass(frozen=True)
class DriverContext:
    """The sweep's recorder (the single MLflow writer), and the errored trials a ``sweep rerun``
    restarts (Ray's restart_errored): live again, though Ray saved them as ERROR."""

    recorder: SweepRecorder
    rerunning: frozenset[str] = field(default_factory=frozenset)


_OPEN: list[DriverContext] = []  # the context of the fit in progress (one driver a process)


@contextmanager
def driving(recorder: SweepRecorder, *, rerunning: Collection[str] = ()) -> Iterator[DriverContext]:
    """The context for one ``Tuner.fit``: set before Ray restores or starts anything, cleared
    after, even when the fit raises."""
    if _OPEN:
        raise RuntimeError("a sweep is already being driven in this process")
    context = DriverContext(recorder, frozenset(rerunning))
    _OPEN.append(context)
    try:
        yield context
    finally:
        _OPEN.clear()


def active() -> DriverContext:
    """The context of the fit in progress."""
    if not _OPEN:
        raise RuntimeError("no sweep is being driven: Ray's callbacks run only inside driving()")
    return _OPEN[0]


def rerunning() -> frozenset[str]:
    """The trials the fit in progress re-runs (none outside a fit)."""
    return _OPEN[0].rerunning if _OPEN else frozenset()
