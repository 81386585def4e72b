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

__all__ = ["report_evaluation", "save_figure", "write_csv"]


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


def report_evaluation(args: Any, interp: Any, result: dict, summary: str, matrix_name: str) -> int:
    """``evaluate``'s output: the confusion-matrix figure when asked for, then the JSON result or the
    summary line and the classification report."""
    import json

    if args.confusion_matrix is not None:
        save_figure(interp.plot_confusion_matrix(return_fig=True), args.confusion_matrix)
        result["confusion_matrix_png"] = str(args.confusion_matrix)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(summary)
    interp.print_classification_report()
    if args.confusion_matrix is not None:
        print(f"{matrix_name}: {args.confusion_matrix}")
    return 0
