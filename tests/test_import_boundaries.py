"""The import structure, read from the source's AST: ray only inside sweeps/tune/; mlflow,
lm_eval, openai and fastapi each in one module; no import circle; the floors evals/ < trainers/
< sweeps/, and the sweep config reading only the schema below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OWNERS = {
    "ray": "sweeps/tune/",  # a package: every importer lies inside it
    "mlflow": "sweeps/tracking/mlflow_facade.py",
    "lm_eval": "evals/benchmarks.py",
    "openai": "sweeps/ab/judge.py",  # the judge's client; sweep serve answers it
    "fastapi": "sweeps/serving/serve_app.py",
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


# The floors, lowest first: a module imports its own package and those below it, never one above.
# evals/ holds the metric names and the evaluation's schema, trainers/ the trainer's schema and
# the trial, sweeps/ the driver; the sweep config (sweeps/config/) puts the schema together.
FLOORS = ("evals", "trainers", "sweeps")


def floor(module: str) -> int:
    return FLOORS.index(module.split(".")[0])


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{name} -> {i}" for name, imported in graph.items()
                  for i in imported if floor(i) > floor(name))  # fmt: skip


def test_each_package_imports_only_its_floor_and_those_below() -> None:
    assert upward_imports(import_graph()) == []


# sweeps/'s rooms, lowest first (each a sub-package, or a module of its own; "" is sweeps/
# itself, the public API): a room imports its own and those below it. The driver never imports
# the command line; nothing below the driver imports it.
ROOMS = ("config", "console", "report_templates", "search", "prepare", "tracking", "tune",
         "serving", "ab", "release", "driver", "cli", "api", "")  # fmt: skip


def room(module: str) -> int:
    parts = module.split(".")
    return ROOMS.index(parts[1] if len(parts) > 1 else "")


def test_each_room_of_sweeps_imports_only_its_own_and_those_below() -> None:
    graph = import_graph()
    inside = {name: {i for i in imported if i.startswith("sweeps")}
              for name, imported in graph.items() if name.startswith("sweeps")}  # fmt: skip
    assert {name.split(".")[1] for name in inside if "." in name} <= set(ROOMS)
    upward = sorted(f"{name} -> {i}" for name, imported in inside.items()
                    for i in imported if room(i) > room(name))  # fmt: skip
    assert upward == []
    assert room("sweeps.driver.launch") < room("sweeps.cli.options")


def test_trainers_and_evals_do_not_import_sweeps() -> None:
    graph = import_graph()
    below = {name: sorted(i for i in imported if i.split(".")[0] == "sweeps")
             for name, imported in graph.items() if not name.startswith("sweeps")}  # fmt: skip
    assert {name: found for name, found in below.items() if found} == {}
    assert any(i.startswith("sweeps.") for i in graph["sweeps.api"])  # the graph sees imports


def test_the_sweep_config_reads_only_the_schema_below_it() -> None:
    """sweeps/config/ is the schema: it imports the trainer's and the evaluation's sections (and
    trainers.targets, which names target sets), nothing of the driver."""
    allowed = ("sweeps.config", "trainers.config", "trainers.targets", "evals.config",
               "evals.metric_keys")  # fmt: skip
    found = sorted(f"{name} -> {i}" for name, imported in import_graph().items()
                   if name.startswith("sweeps.config") for i in imported
                   if not i.startswith(allowed))  # fmt: skip
    assert found == []
    schema = [n for n in import_graph() if n.endswith(".config") or n.startswith("sweeps.config")]
    assert {"trainers.config", "evals.config", "sweeps.config.sweep"} <= set(schema)


def test_an_upward_import_is_found() -> None:
    graph = {"trainers.spec": {"sweeps.config", "evals.config"}, "evals.plan": {"trainers.x"},
             "sweeps.api": {"trainers.spec"}}  # fmt: skip
    assert upward_imports(graph) == ["evals.plan -> trainers.x", "trainers.spec -> sweeps.config"]
