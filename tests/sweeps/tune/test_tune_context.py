"""The driver's context for Ray's pickled callback and searcher: set for one fit, cleared after
it however it ends, and never handed out outside one (no stale recorder from an earlier sweep)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from sweeps.tune.context import active, driving, rerunning


def test_the_context_lives_exactly_as_long_as_the_fit() -> None:
    recorder = cast(Any, object())
    with pytest.raises(RuntimeError, match="no sweep is being driven"):
        active()
    assert rerunning() == frozenset()
    with driving(recorder, rerunning=["a1", "b2"]) as context:
        assert active() is context and active().recorder is recorder
        assert rerunning() == {"a1", "b2"}
        with pytest.raises(RuntimeError, match="already being driven"), driving(recorder):
            pass
    assert rerunning() == frozenset()
    with pytest.raises(KeyboardInterrupt), driving(recorder):  # Ctrl-C mid-fit
        raise KeyboardInterrupt
    with pytest.raises(RuntimeError, match="no sweep is being driven"):
        active()
