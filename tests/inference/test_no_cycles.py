"""No import cycle inside ``vision_tl/inference``: runtime imports, module- and function-level, ``TYPE_CHECKING`` left out."""

from __future__ import annotations

import ast
from pathlib import Path

import vision_tl

PACKAGE = Path(vision_tl.__file__).parent
FOLDER = "vision_tl.inference"


class _Imports(ast.NodeVisitor):
    """Every ``import``/``from ... import`` in a module, at any depth, except under ``if TYPE_CHECKING:``."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append(node)


def _modules(folder: str) -> dict[str, Path]:
    root = PACKAGE.parent
    out = {}
    for f in (root / folder.replace(".", "/")).rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _targets(me: str, is_init: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = me.split(".") if is_init else me.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    return [mod] + [f"{mod}.{a.name}" for a in node.names]


def import_graph(folder: str = FOLDER) -> dict[str, set[str]]:
    """module -> the modules of ``folder`` it imports at run time."""
    mods = _modules(folder)
    graph = {}
    for me, f in mods.items():
        visitor = _Imports()
        visitor.visit(ast.parse(f.read_text(encoding="utf-8")))
        deps = set()
        for node in visitor.found:
            for t in _targets(me, f.name == "__init__.py", node):
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != me and t != folder:
                    deps.add(t)
        graph[me] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_inference_package_has_no_import_cycle():
    graph = import_graph()
    assert {"vision_tl.inference.predict", "vision_tl.inference.load", "vision_tl.inference.vtl"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(m.removeprefix(FOLDER + ".") for m in cycle)


def test_the_cycle_finder_sees_function_level_imports_and_skips_type_checking(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import A\n"
           "def f():\n    from .y import B\n")
    visitor = _Imports()
    visitor.visit(ast.parse(src))
    names = [n.module for n in visitor.found if isinstance(n, ast.ImportFrom)]
    assert names == ["typing", "y"]
