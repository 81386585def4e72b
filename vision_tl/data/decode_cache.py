"""Decoded images kept in memory across epochs, in the main process only.

When the model trains on a small CPU the loader decodes in the main process (``default_num_workers``
gives such a device no workers), where decoding is 13-15% of ``fine_tune``'s time, and every epoch
decodes the same files again. This keeps each file's decoded RGB array (at the JPEG draft size the
item transforms asked for) until a memory budget is full; then it stops adding (with shuffled
epochs, evicting would only churn). The key is the file's path, size, inode, modification and change
times and the draft size, so a file replaced on disk is decoded again. Worker processes do not use
it: each sees only part of every epoch, and each would hold its own copy.

The budget is ``VISION_TL_DECODE_CACHE_MB`` (default 512; 0 turns the cache off), read on first use,
or :func:`configure` at run time.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import get_worker_info

from .images import load_rgb

__all__ = ["DecodeCache", "configure", "decode_cache", "load_rgb_cached"]

DEFAULT_BUDGET_MB = 512


class DecodeCache:
    """Read-only decoded arrays by key, up to ``budget`` bytes; ``hits``/``misses`` count lookups."""

    def __init__(self, budget: int) -> None:
        self.budget = max(0, int(budget))
        self.nbytes = self.hits = self.misses = 0
        self._arrays: dict[Hashable, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._arrays)

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            arr = self._arrays.get(key)
            if arr is None:
                self.misses += 1
            else:
                self.hits += 1
            return arr

    def put(self, key: Hashable, arr: np.ndarray) -> bool:
        """Keep ``arr`` (made read-only) if it fits in what is left of the budget; returns whether it did."""
        with self._lock:
            if key in self._arrays or self.nbytes + arr.nbytes > self.budget:
                return False
            arr.flags.writeable = False
            self._arrays[key] = arr
            self.nbytes += arr.nbytes
            return True

    def clear(self) -> None:
        with self._lock:
            self._arrays.clear()
            self.nbytes = self.hits = self.misses = 0


_cache: DecodeCache | None = None


def decode_cache() -> DecodeCache:
    """This process's cache (made on first use with the budget from ``VISION_TL_DECODE_CACHE_MB``)."""
    global _cache
    if _cache is None:
        raw = os.environ.get("VISION_TL_DECODE_CACHE_MB", str(DEFAULT_BUDGET_MB))
        try:
            mb = float(raw)
        except ValueError:
            raise ValueError(f"VISION_TL_DECODE_CACHE_MB must be a number of megabytes, got {raw!r}") from None
        _cache = DecodeCache(int(mb * 2**20))
    return _cache


def configure(budget_mb: float) -> DecodeCache:
    """Start a new, empty cache of ``budget_mb`` megabytes (0: off) and return it."""
    global _cache
    if budget_mb < 0:
        raise ValueError(f"budget_mb must be >= 0, got {budget_mb!r}")
    _cache = DecodeCache(int(budget_mb * 2**20))
    return _cache


def _file_key(src: Any, draft_size: tuple[int, int] | None) -> tuple | None:
    """What identifies a regular file's current content and decode; None for anything else."""
    if not isinstance(src, (str, Path)):
        return None
    try:
        st = os.stat(src)
    except OSError:
        return None  # the decode itself raises the error that names the file
    if not stat.S_ISREG(st.st_mode):
        return None
    return (os.fspath(src), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, draft_size)


def load_rgb_cached(src: Any, draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """``load_rgb(src, draft_size)``, from the cache when the main process decoded this file before.

    Always a writable array of the caller's own: item transforms may change it in place.
    """
    cache = decode_cache()
    key = _file_key(src, draft_size) if cache.budget and get_worker_info() is None else None
    if key is None:
        return load_rgb(src, draft_size=draft_size)
    arr = cache.get(key)
    if arr is None:
        arr = load_rgb(src, draft_size=draft_size)
        if cache.put(key, arr):
            return arr.copy()
        return arr
    return arr.copy()
