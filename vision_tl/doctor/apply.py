"""Act on a ``decisions.csv`` without ever losing a file, and undo it byte for byte.

``delete`` moves the file into a quarantine folder (next to the data root, never ``unlink``); a class
name moves the file into that class's folder (labels from folders) or rewrites the label CSV
(atomically, the original kept in the quarantine run folder). Every step is written to a journal
*before* it is taken, so :func:`undo_decisions` can restore a run that stopped half-way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import replacing
from .decisions import DELETE, KEEP, read_decisions

__all__ = ["apply_decisions", "undo_decisions"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _resolve(given: str, root: Path) -> Path:
    """A decisions path as given to the tool (relative to the working folder), else relative to the root."""
    p = Path(given)
    if p.is_absolute() or p.exists():
        return Path(os.path.abspath(p))
    return Path(os.path.abspath(root / p))


def _write_journal(path: Path, journal: dict) -> None:
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(journal, indent=2), encoding="utf-8")


def _plan(rows: Sequence[tuple[str, str]], root: Path, run: Path, label_csv: Path | None,
          classes: Sequence[str] | None) -> tuple[list[dict], dict[Path, str | None]]:
    """Check every row first (nothing moves when one is wrong); the moves and the CSV relabels to do."""
    moves: list[dict] = []
    relabel: dict[Path, str | None] = {}  # CSV labelling: file -> new label (None: drop the row)
    seen: set[Path] = set()
    for given, action in rows:
        src = _resolve(given, root)
        if not _inside(src, root):
            raise ValueError(f"decisions: {given!r} is outside the data folder {str(root)!r}; refusing to touch it")
        if action == KEEP:
            continue
        if src in seen:
            raise ValueError(f"decisions: {given!r} appears twice with an action")
        seen.add(src)
        if not src.is_file():
            raise FileNotFoundError(f"decisions: no file {given!r} (looked for {str(src)!r})")
        if action == DELETE:
            moves.append({"op": "move", "src": str(src), "dst": str(run / "files" / src.relative_to(root))})
            if label_csv is not None:
                relabel[src] = None
            continue
        if classes is not None and action not in classes:
            raise ValueError(f"decisions: {given!r}: action {action!r} is not keep, delete or a class "
                             f"({', '.join(map(str, classes[:10]))})")
        if label_csv is not None:
            relabel[src] = action
        elif action != src.parent.name:
            dst = src.parent.parent / action / src.name
            if not _inside(dst, root):
                raise ValueError(f"decisions: moving {given!r} to class {action!r} would leave the data folder")
            moves.append({"op": "move", "src": str(src), "dst": str(dst)})
    for m in moves:
        if Path(m["dst"]).exists():
            raise FileExistsError(f"decisions: {m['dst']!r} already exists; not overwriting it with {m['src']!r}")
    dsts = [m["dst"] for m in moves]
    if len(set(dsts)) != len(dsts):
        raise FileExistsError("decisions: two files would be moved to the same name")
    return moves, relabel


def apply_decisions(decisions: str | Path, root: str | Path, label_csv: str | Path | None = None,
                    classes: Sequence[str] | None = None, quarantine: str | Path | None = None) -> Path:
    """Apply ``decisions`` (a CSV file) to the data under ``root``; returns the journal's path.

    Args:
        label_csv: the label CSV when labels come from one (``path``-relative file names in its first
            column, labels in its second): relabels and deletions rewrite it; else labels are folders.
        classes: the known class names; another action is refused.
        quarantine: where deleted files go (default: ``<root>.quarantine`` next to ``root``; it must
            be on the same disk, so that moving is a rename).
    """
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise NotADirectoryError(f"the data folder {str(root)!r} does not exist")
    qdir = Path(os.path.abspath(quarantine or root.parent / f"{root.name}.quarantine"))
    if _inside(qdir, root):
        raise ValueError(f"the quarantine folder {str(qdir)!r} must be outside the data folder")
    run = qdir / time.strftime("%Y%m%d-%H%M%S") / f"run-{os.getpid()}"
    csv_path = Path(os.path.abspath(root / label_csv)) if label_csv is not None else None
    moves, relabel = _plan(read_decisions(decisions), root, run, csv_path, classes)
    run.mkdir(parents=True, exist_ok=False)
    if os.stat(run).st_dev != os.stat(root).st_dev:
        shutil.rmtree(run)
        raise OSError(f"the quarantine folder {str(qdir)!r} is on another disk than {str(root)!r}: pass one on "
                      "the same disk (files are moved, never copied and removed)")
    ops: list[dict] = []
    for m in moves:
        parent = Path(m["dst"]).parent
        missing = []
        while not parent.exists() and parent not in missing:
            missing.append(parent)
            parent = parent.parent
        ops += [{"op": "mkdir", "path": str(p)} for p in reversed(missing) if not _inside(p, run)]
        ops.append({**m, "sha256": _sha256(Path(m["src"]))})
    if relabel and csv_path is not None:
        ops.append({"op": "rewrite", "path": str(csv_path), "backup": str(run / "backup" / csv_path.name),
                    "sha256": _sha256(csv_path)})
    journal = {"version": 1, "root": str(root), "decisions": str(Path(decisions).resolve()),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ops": ops, "undone": None}
    path = run / "journal.json"
    _write_journal(path, journal)  # the whole plan first: a run that stops half-way can still be undone
    for op in ops:
        if op["op"] == "mkdir":
            Path(op["path"]).mkdir(exist_ok=True)
        elif op["op"] == "move":
            Path(op["dst"]).parent.mkdir(parents=True, exist_ok=True)  # inside the run folder
            if Path(op["dst"]).exists():
                raise FileExistsError(f"{op['dst']!r} appeared meanwhile; stopped (undo with the journal {str(path)!r})")
            os.rename(op["src"], op["dst"])
        else:
            _rewrite_csv(Path(op["path"]), Path(op["backup"]), root, relabel)
    return path


def _rewrite_csv(csv_path: Path, backup: Path, root: Path, relabel: dict[Path, str | None]) -> None:
    import pandas as pd

    backup.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(csv_path, backup)
    df = pd.read_csv(csv_path)
    files = [Path(os.path.abspath(root / str(f))) for f in df.iloc[:, 0]]
    keep = [relabel.get(f, "") is not None for f in files]
    for k, f in enumerate(files):
        if relabel.get(f):
            df.iloc[k, 1] = relabel[f]
    with replacing(csv_path) as tmp:
        df[keep].to_csv(tmp, index=False, lineterminator="\n")


def undo_decisions(journal: str | Path) -> dict[str, Any]:
    """Restore what :func:`apply_decisions` changed, in reverse order; returns counts of what was restored."""
    jpath = Path(journal)
    if not jpath.is_file():
        raise FileNotFoundError(f"no journal {str(jpath)!r}")
    data = json.loads(jpath.read_text(encoding="utf-8"))
    if data.get("version") != 1 or "ops" not in data:
        raise ValueError(f"{str(jpath)!r} is not a vision-tl doctor journal")
    if data.get("undone"):
        raise ValueError(f"{str(jpath)!r} was already undone at {data['undone']}")
    done = {"moved_back": 0, "restored": 0, "removed_folders": 0}
    for op in reversed(data["ops"]):
        if op["op"] == "move":
            src, dst = Path(op["src"]), Path(op["dst"])
            if dst.exists() and src.exists():
                raise FileExistsError(f"cannot undo: both {str(src)!r} and {str(dst)!r} exist")
            if dst.exists():
                if _sha256(dst) != op["sha256"]:
                    raise ValueError(f"cannot undo: {str(dst)!r} changed since it was moved")
                src.parent.mkdir(parents=True, exist_ok=True)
                os.rename(dst, src)
                done["moved_back"] += 1
        elif op["op"] == "rewrite":
            backup, target = Path(op["backup"]), Path(op["path"])
            if backup.is_file():
                with replacing(target) as tmp:
                    shutil.copy2(backup, tmp)
                done["restored"] += 1
        elif op["op"] == "mkdir":
            p = Path(op["path"])
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
                done["removed_folders"] += 1
    data["undone"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _write_journal(jpath, data)
    return done
