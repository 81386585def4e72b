"""Inside ``vision_tl`` every folder is a one-way stack: no module imports one that imports it back.

The walk sees what runs: imports at module level and inside functions, relative ones resolved, and a
public name imported from the package root (``from vision_tl import X``) followed to the module that
``vision_tl._EXPORTS`` says defines it (the root imports lazily, so that edge is invisible to a
linter). Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vision_tl
from tests.import_targets import from_target

PKG = Path(vision_tl.__file__).parent

# cycles tolerated for now (none): each entry would be a sorted tuple of module names
ALLOWED: set[tuple[str, ...]] = set()


def module_names(pkg: Path) -> dict[str, Path]:
    """Dotted name -> file for every module of the package under ``pkg``."""
    out = {}
    for f in pkg.rglob("*.py"):
        parts = list(f.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


class _RuntimeImports(ast.NodeVisitor):
    """Every import statement that runs: module and function level, ``if TYPE_CHECKING:`` bodies skipped."""

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


def runtime_imports(source: str, module: str, is_package: bool, modules: set[str],
                    exports: dict[str, str]) -> set[str]:
    """The modules of ``modules`` that ``source`` (the text of ``module``) imports at run time."""
    visitor = _RuntimeImports()
    visitor.visit(ast.parse(source))
    package = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in visitor.found:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            target = from_target(node, package)
            names = [target]
            for a in node.names:
                if target == "vision_tl" and a.name in exports:
                    names.append("vision_tl" + exports[a.name])
                else:
                    names.append(f"{target}.{a.name}")
        for name in names:
            while name and name not in modules:  # a name inside a module: the module
                name = name.rpartition(".")[0]
            if name and name not in (module, "vision_tl"):
                targets.add(name)
    return targets


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    mods = module_names(pkg)
    return {m: runtime_imports(f.read_text(), m, f.name == "__init__.py", set(mods), vision_tl._EXPORTS)
            for m, f in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each a sorted tuple."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_inside_the_package():
    found = [c for c in cycles(import_graph()) if c not in ALLOWED]
    assert found == [], "import cycles (break each by moving what both need into a third module):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_the_walk_finds_a_cycle_through_a_function_level_import_and_a_public_name(tmp_path):
    """The check can fail: ``a`` imports ``b`` inside a function; ``b`` imports ``a`` through the package
    root's lazy export; a ``TYPE_CHECKING`` import of ``c`` back from ``a`` is no cycle."""
    pkg = tmp_path / "vision_tl"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
                              "def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("from vision_tl import Thing\n")
    (pkg / "c.py").write_text("from .a import f\n")
    mods = module_names(pkg)
    graph = {m: runtime_imports(p.read_text(), m, p.name == "__init__.py", set(mods), {"Thing": ".a"})
             for m, p in mods.items()}
    assert graph["vision_tl.a"] == {"vision_tl.b"} and graph["vision_tl.b"] == {"vision_tl.a"}
    assert cycles(graph) == [("vision_tl.a", "vision_tl.b")]
