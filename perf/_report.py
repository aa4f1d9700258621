"""What every benchmark does with its result: print it as JSON, and write it where asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(result: dict[str, Any], out: Path | None) -> dict[str, Any]:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.write_text(text)
    return result
