"""How the sweep's modules speak to the person running it: one line at a time."""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]  # print, a rich console's print, or a test's list.append
