"""``decisions.csv``: rows ``path,action`` (``keep``, ``delete`` or a class name; other columns such as
``why`` are ignored). The doctor drafts one from its findings; a person edits it; ``--apply`` acts on it."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..files import replacing

__all__ = ["draft_rows", "read_decisions", "write_decisions"]

KEEP, DELETE = "keep", "delete"


def draft_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(path, action, why)`` for every file a finding names; the most serious finding decides."""
    rows: dict[str, tuple[str, str]] = {}

    def put(path: str, action: str, why: str) -> None:
        rows.setdefault(path, (action, why))

    for r in data["unreadable"]:
        put(r["path"], DELETE, f"unreadable: {r['reason']}")
    for g in data["duplicates"]:
        if g["kind"] != "exact":
            continue
        keep = g["paths"][0]
        put(keep, KEEP, f"exact duplicate: the copy kept ({len(g['paths'])} copies)")
        for p in g["paths"][1:]:
            put(p, DELETE, f"exact copy of {keep}" + (" (train/valid leak)" if g["leak"] else "")
                + (" (labels differ: check the kept one)" if g["conflict"] else ""))
    for r in data["label_issues"]:
        put(r["path"], r["suggested"], f"suspect label: given {r['given']}, looks like {r['suggested']} "
                                       f"(score {r['score']:.3f}); write keep if it is right")
    for g in data["duplicates"]:
        if g["kind"] == "near":
            for p in g["paths"]:
                put(p, KEEP, "near duplicate of " + ", ".join(q for q in g["paths"] if q != p)
                    + (" (train/valid leak: delete one side)" if g["leak"] else ""))
    for r in data["odd"]:
        put(r["path"], KEEP, f"odd: {r['reason']}")
    return [(p, a, w) for p, (a, w) in rows.items()]


def write_decisions(path: str | Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    """Write ``path,action,why`` rows atomically."""
    with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "action", "why"])
        w.writerows(rows)
    return Path(path)


def read_decisions(path: str | Path) -> list[tuple[str, str]]:
    """``(path, action)`` rows of a decisions file; ``keep``/``delete`` are case-insensitive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no decisions file {str(path)!r}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "action"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{str(path)!r}: the header must name the columns path and action, got {reader.fieldnames!r}")
        out = []
        for n, row in enumerate(reader, start=2):
            p, a = (row["path"] or "").strip(), (row["action"] or "").strip()
            if not p or not a:
                raise ValueError(f"{str(path)!r} line {n}: a row needs a path and an action, got {row!r}")
            out.append((p, a.lower() if a.lower() in (KEEP, DELETE) else a))
    return out
