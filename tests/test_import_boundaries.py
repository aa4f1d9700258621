"""ray is imported only inside the package sweeps/tune/; mlflow, lm_eval, openai and fastapi each by one module only
(read from the source's AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OWNERS = {
    "ray": "sweeps/tune/",  # a package: every importer lies inside it
    "mlflow": "sweeps/_tracking.py",
    "lm_eval": "evals/benchmarks.py",
    "openai": "sweeps/judge.py",  # the judge's client; sweep serve answers it
    "fastapi": "sweeps/serve_app.py",
}


def importers(library: str) -> set[str]:
    found = set()
    for package in ("sweeps", "trainers", "evals"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )  # fmt: skip
                if any(n == library or n.startswith(f"{library}.") for n in names):
                    found.add(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_library_is_imported_in_one_place(library: str) -> None:
    owner, found = OWNERS[library], importers(library)
    if owner.endswith("/"):
        assert found and all(path.startswith(owner) for path in found), sorted(found)
    else:
        assert found == {owner}


def test_the_tune_package_exports_its_tuner_functions_in_sorted_order() -> None:
    import sweeps.tune
    from sweeps.tune import tuner

    assert sweeps.tune.__all__ == sorted(sweeps.tune.__all__)
    assert all(getattr(sweeps.tune, name) is getattr(tuner, name) for name in sweeps.tune.__all__)
