"""The config's error, and the name check every name that becomes a path goes through."""

from __future__ import annotations

import re

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ConfigError(ValueError):
    """A config problem, already phrased as one line: ``file:line: field: message``."""


def check_safe_name(value: str, *, what: str = "name") -> str:
    """Reject names that could escape a directory (``../``, absolute paths, NUL, odd characters)."""
    if not SAFE_NAME.match(value) or ".." in value:
        raise ConfigError(
            f"{what} {value!r} must be 1-100 characters of letters, digits, '.', '_' or '-', "
            "start with a letter or digit, and contain no '..'"
        )
    return value
