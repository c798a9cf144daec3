"""The package's modules import each other without a cycle.

Every import counts, also those inside functions (the lazy ones that keep the Lambda's
cold start short) and under ``TYPE_CHECKING``: a cycle through them is still two modules
that cannot be understood, or changed, one without the other.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "redis_gateway"


def module_name(path: Path) -> str:
    parts = ["redis_gateway", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
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
