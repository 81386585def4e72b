"""What the import-walking tests share: the absolute module an ``import``/``from ... import`` names."""

from __future__ import annotations

import ast


def from_target(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from <node> import ...`` written inside ``package`` (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))
