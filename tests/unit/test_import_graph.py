"""The package's modules import each other without a cycle.

Every import counts, also those inside functions (the lazy ones that keep the Lambda's
cold start short) and under ``TYPE_CHECKING``: a cycle through them is still two modules
that cannot be understood, or changed, one without the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "redis_gateway"


def module_name(path: Path) -> str:
    parts = ["redis_gateway", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def import_graph(at_import: bool = False) -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports; ``at_import``:
    only those imported when it is (not inside functions, not for type checking)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        for node in (_run_at_import(tree) if at_import else ast.walk(tree)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                source = ".".join(p for p in (base, node.module or "") if p)
                # ``from . import settings`` imports a module; ``from .x import y`` a name.
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in paths else source
                           for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in paths and t != name}
    return graph


def _run_at_import(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for s in child.orelse for n in [s, *_run_at_import(s)])
            continue
        yield child
        yield from _run_at_import(child)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph[name]
    return seen


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as the path of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[name] = 2
        path.pop()
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_lazy_and_relative_imports_are_in_the_graph() -> None:
    graph = import_graph()
    # make_backend imports the topologies inside the function.
    assert {"redis_gateway.backends.node", "redis_gateway.backends.cluster.backend",
            "redis_gateway.backends.sentinel"} <= graph["redis_gateway.backends"]
    assert "redis_gateway.settings" in graph["redis_gateway.cli"]  # from . import settings
    assert "redis_gateway.resp" in graph["redis_gateway.backends.cluster.router"]  # ...resp


def test_a_cycle_is_found_with_its_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_a_standalone_gateway_loads_no_topology() -> None:
    """Importing the app (a Lambda's cold start) loads the standalone backend only: the
    topologies are imported when one is configured."""
    loaded = reachable(import_graph(at_import=True), "redis_gateway.app")
    assert "redis_gateway.backends.node" in loaded
    topologies = {m for m in import_graph() if m.startswith(("redis_gateway.backends.cluster",
                                                             "redis_gateway.backends.replicas",
                                                             "redis_gateway.backends.sentinel"))}
    assert len(topologies) > 5 and not loaded & topologies
    assert "redis_gateway.graphql.endpoint" not in loaded  # built at the first GraphQL request
