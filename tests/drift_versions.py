"""What ``make drift`` installed that the lock does not: each package whose newest release (as
pyproject.toml's ranges allow) differs from its pin in requirements-lock.txt, and what is new.

Run by the drift environment's Python: ``python tests/drift_versions.py requirements-lock.txt``.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    """Each pinned package's version in the lock."""
    pins = (PIN.match(line) for line in lock.read_text().splitlines())
    return {canonical(m[1]): m[2] for m in pins if m}


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in distributions()}


def drift_lines(pins: dict[str, str], found: dict[str, str]) -> list[str]:
    """One line per package that moved, was added, or is gone, against the lock."""
    ignored = {"pip", "setuptools", "lora-sweep", "torch"}  # the venv's own, ours, torch's pin
    moved = [f"  {name}: {pins[name]} in the lock, {found[name]} now"
             for name in sorted(pins.keys() & found.keys())
             if pins[name] != found[name] and name not in ignored]  # fmt: skip
    added = [f"  {name}: {found[name]} now, not in the lock"
             for name in sorted(found.keys() - pins.keys() - ignored)]  # fmt: skip
    gone = [f"  {name}: {pins[name]} in the lock, not installed now"
            for name in sorted(pins.keys() - found.keys() - ignored)]  # fmt: skip
    return [*moved, *added, *gone]


def main(argv: list[str]) -> int:
    lock = Path(argv[0] if argv else "requirements-lock.txt")
    lines = drift_lines(locked(lock), installed())
    print(f"drift against {lock}: {len(lines)} package(s) differ from the lock")
    print("\n".join(lines) if lines else "  none: the newest releases are the locked ones")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
