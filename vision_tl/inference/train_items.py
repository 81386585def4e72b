"""The export's ``"train_items"`` entry: which files a model was trained on, as short hashes, so that
``vision-tl evaluate`` can say when it is scoring images the model has already seen.

A file is known by the hash of its name and size (``"<name>:<bytes>"``, SHA-1, 10 hex digits): no path (a
model moves between machines, its data between folders), nothing of the image itself, nothing that can
be read back into a file name. Two different images with the same name and the same size are taken for
one; a re-encoded copy is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["train_items_entry", "trained_on"]

KEY = "train_items"
_HOW = "sha1(name:size)[:10]"
_MAX_ITEMS = 200_000  # beyond this the manifest would grow by megabytes: the entry then holds the count only


def _item_hash(path: Path) -> str | None:
    try:
        size = path.stat().st_size
    except OSError:
        return None
    return hashlib.sha1(f"{path.name}:{size}".encode("utf-8", "surrogateescape")).hexdigest()[:10]


def _hashes(items: Iterable[Any]) -> set[str]:
    found = (_item_hash(Path(i)) for i in items if isinstance(i, (str, Path)))
    return {h for h in found if h is not None}


def train_items_entry(learn: Any) -> dict[str, Any]:
    """``{"train_items": {...}}`` for the manifest of ``learn``'s export (empty without a training set of files)."""
    ds = getattr(getattr(learn, "dls", None), "train_ds", None)
    items = getattr(ds, "items", None)
    if not isinstance(items, list):
        return {}
    if len(items) > _MAX_ITEMS:
        return {KEY: {"how": _HOW, "n": len(items), "hashes": None}}
    hashes = sorted(_hashes(items))
    return {KEY: {"how": _HOW, "n": len(hashes), "hashes": hashes}} if hashes else {}


def trained_on(manifest: dict[str, Any], files: Iterable[Any]) -> list[Path]:
    """The ``files`` that the model of ``manifest`` was trained on (same name and size), in order."""
    entry = manifest.get(KEY)
    if not isinstance(entry, dict) or entry.get("how") != _HOW or not entry.get("hashes"):
        return []
    known = set(entry["hashes"])
    return [Path(f) for f in files if isinstance(f, (str, Path)) and _item_hash(Path(f)) in known]
