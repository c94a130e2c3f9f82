"""Import-graph guards: no import circles among Sirius's modules, no reach into another package's privates.

Every relative or ``sirius.`` import of every module is read with ``ast`` -- imports inside
functions included, since a circle hidden in a function is still a circle of responsibilities --
and resolved to the module it names (``from . import _x`` names the submodule ``_x``; ``from .
import name`` names the package's ``__init__``). Two things are not edges: the implicit import of
a parent package when a submodule loads, and imports under ``if TYPE_CHECKING:``, which name a
type for the checker and never run (a view's ``build(lake: Lakehouse)`` annotation is not a
dependency of the view on the lakehouse's code). Run this file as a script to print the cycles
and private imports it finds.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("admin", "collector", "distributed", "flight", "identity", "lakehouse", "otel_bridge", "tracing")


def _module_files() -> dict[str, Path]:
    """``sirius.<package>[.<sub>...]`` → source file, for every module of every package."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "native" in parts[:-1]:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules["sirius." + ".".join(parts)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        yield node
        if _is_type_checking_block(node):
            pending.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        pending.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Yield ``(target module, line)`` for each import of a Sirius module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if _is_package(path) else name.rpartition(".")[0]
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sirius."):
                    yield alias.name, node.lineno
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if not (node.module or "").startswith("sirius."):
                continue
            base = node.module or ""
        else:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield (submodule if submodule in modules else base), node.lineno


def import_graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    """The graph ``module → modules it imports``, restricted to Sirius modules."""
    modules = _module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _line in _imports(name, path, modules):
            if target in modules and target != name:
                graph[name].add(target)
    return graph, modules


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete circle inside ``component``: a shortest path from its first module back to it."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component


def private_imports() -> list[str]:
    """Imports of another top-level package's private module (``from ..pkg._x import ...``)."""
    modules = _module_files()
    found = []
    for name, path in modules.items():
        own = name.split(".")[1]
        for target, line in _imports(name, path, modules):
            parts = target.split(".")
            if len(parts) < 2 or parts[1] == own:
                continue
            if any(part.startswith("_") for part in parts[2:]):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return sorted(found)


def test_the_graph_sees_every_package() -> None:
    graph, _ = import_graph()
    for package in PACKAGES:
        assert f"sirius.{package}" in graph
    # a known edge: the tracing package's face imports its tracer
    assert "sirius.tracing._tracer" in graph["sirius.tracing"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    graph, _ = import_graph()
    mine = [c for c in cycles(graph) if any(m.split(".")[1] == package for m in c)]
    assert not mine, "import cycles:\n" + "\n".join(" -> ".join(cycle_path(graph, c)) for c in mine)


def test_no_imports_of_another_packages_private_modules() -> None:
    found = private_imports()
    assert not found, "\n".join(found)


def test_the_checks_catch_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycle_path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


if __name__ == "__main__":
    graph, _ = import_graph()
    for component in cycles(graph):
        sys.stdout.write(f"cycle ({len(component)} modules): {' -> '.join(cycle_path(graph, component))}\n")
        sys.stdout.write(f"    members: {', '.join(component)}\n")
    for line in private_imports():
        sys.stdout.write(f"private import: {line}\n")
