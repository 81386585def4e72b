"""The per-user cache of ONNX graphs built from ``.vtl`` files (never a file beside the user's model).

``load_learner(backend="onnxruntime"|"auto")`` needs an ONNX graph of the model; building one (a
torch export and a check against torch) takes seconds, so it is kept here for the next load:

- **where**: ``$VISION_TL_CACHE`` when set, else the platform's user cache folder for ``vision_tl``
  (``~/.cache/vision_tl`` on Linux, honouring ``$XDG_CACHE_HOME``; ``~/Library/Caches/vision_tl`` on
  macOS; ``%LOCALAPPDATA%\\vision_tl\\Cache`` on Windows), sub-folder ``onnx``.
- **key**: the SHA-256 of the ``.vtl`` file's bytes plus a tag (``fp32`` today): a graph is found by
  content, whatever the file is named or wherever it moves, and an edited file never meets a stale graph.
  The file name is ``<sha256>.<tag>.onnx``; the caller also checks the metadata inside (``get``'s ``check``).
- **writes** are atomic (temporary sibling, ``os.replace``); two processes building the same graph
  both write whole files and the last rename wins.
- **size**: after each write the least recently used graphs are removed until the folder holds at most
  ``$VISION_TL_CACHE_MAX_MB`` (default 2048) MiB; a hit refreshes a graph's access time.
- **read-only or unusable cache**: ``put`` returns False and the caller uses the graph from memory;
  loading still works, it just rebuilds the graph every time.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..files import sibling_temp

__all__ = ["cache_dir", "get", "prune", "put"]

ENV_DIR = "VISION_TL_CACHE"
ENV_MAX_MB = "VISION_TL_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048


def cache_dir() -> Path:
    """The folder graphs are cached in (``$VISION_TL_CACHE``, else the platform's user cache dir), not created."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser() / "onnx"
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs is not a hard dependency: the XDG convention covers Linux and macOS users
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vision_tl"
    else:
        base = Path(user_cache_dir("vision_tl", appauthor=False))
    return base / "onnx"


def max_bytes() -> int:
    """The cache's size limit in bytes, from ``$VISION_TL_CACHE_MAX_MB`` (default 2048 MiB)."""
    raw = os.environ.get(ENV_MAX_MB)
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        raise ValueError(f"${ENV_MAX_MB} must be a number of MiB, got {raw!r}") from None
    return int(mb * 2**20)


def entry_path(sha256: str, tag: str = "fp32") -> Path:
    """Where the graph of the file with content hash ``sha256`` is (or would be) cached."""
    return cache_dir() / f"{sha256}.{tag}.onnx"


def get(sha256: str, tag: str = "fp32") -> Path | None:
    """The cached graph's path for ``sha256``, or None; a hit is marked as recently used."""
    path = entry_path(sha256, tag)
    if not path.is_file():
        return None
    try:
        os.utime(path)  # least recently used goes first when pruning
    except OSError:
        pass  # a read-only cache is still a cache
    return path


def put(sha256: str, data: bytes, tag: str = "fp32") -> bool:
    """Store ``data`` as the graph of ``sha256`` (atomically) and prune the cache; False when it cannot be written."""
    path = entry_path(sha256, tag)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = sibling_temp(path, ".onnx")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:  # read-only or full disk, a file where the folder should be: the caller goes on in memory
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        return False
    prune(keep=path)
    return True


def prune(limit: int | None = None, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used graphs until the cache holds at most ``limit`` bytes (default
    ``max_bytes()``); ``keep`` is never removed. Returns what was removed; never raises on a file error."""
    limit = max_bytes() if limit is None else limit
    try:
        entries = [(p, p.stat()) for p in cache_dir().glob("*.onnx")
                   if p.is_file() and not p.name.startswith(".")]  # not a write in progress
    except OSError:
        return []
    total = sum(st.st_size for _, st in entries)
    removed = []
    for p, st in sorted(entries, key=lambda e: max(e[1].st_atime, e[1].st_mtime)):
        if total <= limit:
            break
        if p == keep:
            continue
        try:
            p.unlink()
        except OSError:
            continue
        total -= st.st_size
        removed.append(p)
    return removed
