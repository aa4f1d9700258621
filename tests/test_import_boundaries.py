"""The import structure, read from the source's AST: ray only inside sweeps/tune/; mlflow,
lm_eval, openai and fastapi each in one module; no import circle; trainers/ and evals/ below
sweeps/."""

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


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in it (inside functions too: a lazy
    import that closes a circle still ties the modules together)."""
    modules = {}
    for package in ("sweeps", "trainers", "evals"):
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # ``from pkg import submodule`` imports the submodule
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]  # fmt: skip
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in map(owner, targets) if t and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for after in sorted(graph[node]):
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_a_circle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


# trainers/ and evals/ sit below sweeps/ and never import it; these three still read the schema
# from sweeps.config, until it moves to the ground floor (issue 30). No other may join them.
BELOW_SWEEPS_EXCEPTIONS = {"trainers.spec", "trainers.lora_trial", "evals.benchmark_plan"}


def test_trainers_and_evals_do_not_import_sweeps() -> None:
    graph = import_graph()
    upward = {name for name, imported in graph.items()
              if name.startswith(("trainers", "evals")) and any(
                  i == "sweeps" or i.startswith("sweeps.") for i in imported)}  # fmt: skip
    assert upward <= BELOW_SWEEPS_EXCEPTIONS, sorted(upward - BELOW_SWEEPS_EXCEPTIONS)
