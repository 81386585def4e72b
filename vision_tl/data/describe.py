"""How the data block names things in its messages: an item, a source of items, a function, and the
``GetterError`` raised when a step of the block fails on an item.

Shared by ``datablock.py`` and ``block_summary.py`` (which imports neither of the two back).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .splitters import as_rows, is_dataframe

__all__ = ["GetterError", "describe", "describe_source", "func_name"]


class GetterError(ValueError):
    """``get_items``/``get_x``/the splitter failed; ``.step`` names the step, ``.item`` the item."""

    def __init__(self, step: str, item: Any, reason: str):
        self.step, self.item, self.reason = step, item, reason
        super().__init__(f"{step} failed on {describe(item)}: {reason}")


def describe(item: Any, n: int = 160) -> str:
    """A short, readable name for an item (a path, or a DataFrame row as a dict)."""
    if isinstance(item, Path):
        text = str(item)
    elif hasattr(item, "to_dict") and hasattr(item, "name"):  # a pandas Series: a row of the table
        text = f"row {item.name!r} {item.to_dict()!r}"
    else:
        text = repr(item)
    return text if len(text) <= n else text[: n - 3] + "..."


def describe_source(source: Any) -> str:
    """Where items came from, for messages: a folder, or a list/table of items (by size and first item)."""
    if isinstance(source, (str, os.PathLike)):
        return repr(str(source))
    if is_dataframe(source):
        return f"a table of {len(source)} rows (columns {list(source.columns)!r})"
    try:
        n = len(source)
        first = as_rows(source)[0] if n else None
    except Exception:  # noqa: BLE001 - any other source is described by its repr
        return describe(source)
    return f"the {n} items given" + (f" (the first is {describe(first)})" if n else "")


def func_name(f: Any) -> str:
    """A function's ``__name__`` (its repr when it has none), for messages."""
    return getattr(f, "__name__", None) or repr(f)
