"""What the ``vision-tl`` command writes: CSV tables and figures, whole or not at all.

Each file is written under a temporary sibling name and renamed into place (``files.replacing``), so a
failed or killed run leaves no half-written output and a rerun is not refused because of debris. A file
name that is not valid UTF-8 is written to a CSV as its own bytes (``surrogateescape``), so the CSV names
the exact file; lines end with ``\\n``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .files import replacing

__all__ = ["save_figure", "write_csv"]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write ``header`` and ``rows`` to ``path`` atomically (parent folders are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure atomically (format from the suffix, PNG when there is none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower() or "png", dpi=100, bbox_inches="tight")
