"""Decoded images kept in memory across epochs, in the main process only.

When the model trains on a small CPU the loader decodes in the main process (``default_num_workers``
gives such a device no workers), where decoding is 13-15% of ``fine_tune``'s time, and every epoch
decodes the same files again. This keeps each file's decoded RGB array (at the JPEG draft size the
item transforms asked for) within a memory budget, least recently used out first, so a notebook that
moves on to other data or another size does not keep the old arrays. Each entry remembers the
file's device, inode, size and modification and change times: a file replaced on disk is decoded
again and its old array freed. Worker processes do not use it: each sees only part of every epoch,
and each would hold its own copy.

The budget is ``VISION_TL_DECODE_CACHE_MB`` (default 512, or 1/16 of the memory when less; 0 turns
the cache off), read on first use; ``configure(mb)`` starts a new one at run time and
``decode_cache().clear()`` frees it.
"""

from __future__ import annotations

import math
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import get_worker_info

from .images import load_rgb

__all__ = ["DecodeCache", "configure", "decode_cache", "default_budget", "load_rgb_cached"]

DEFAULT_BUDGET_MB = 512  # at most; never more than 1/16 of the machine's memory


class DecodeCache:
    """Read-only decoded arrays by ``(path, draft size)``, least recently used first out, up to
    ``budget`` bytes. An entry remembers the file's stat stamp; a lookup with another stamp (the file
    was replaced) drops it. ``hits``/``misses`` count lookups."""

    def __init__(self, budget: int) -> None:
        self.budget = max(0, int(budget))
        self.nbytes = self.hits = self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[Hashable, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, stamp: Hashable) -> np.ndarray | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            if entry is not None:  # the file changed: its old pixels go
                self._drop(key)
            self.misses += 1
            return None

    def put(self, key: Hashable, stamp: Hashable, arr: np.ndarray) -> bool:
        """Keep ``arr`` (made read-only), evicting the least recently used; False if it cannot fit at all."""
        with self._lock:
            if arr.nbytes > self.budget:
                return False
            if key in self._entries:
                self._drop(key)
            while self.nbytes + arr.nbytes > self.budget:
                self._drop(next(iter(self._entries)))
            arr.flags.writeable = False
            self._entries[key] = (stamp, arr)
            self.nbytes += arr.nbytes
            return True

    def _drop(self, key: Hashable) -> None:
        self.nbytes -= self._entries.pop(key)[1].nbytes

    def clear(self) -> None:
        """Free every array (and reset the counts)."""
        with self._lock:
            self._entries.clear()
            self.nbytes = self.hits = self.misses = 0


_cache: DecodeCache | None = None


def _megabytes(value: float, what: str) -> int:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a number of megabytes >= 0, got {value!r}")
    return int(value * 2**20)


def default_budget() -> int:
    """``DEFAULT_BUDGET_MB``, or 1/16 of the physical memory when that is less."""
    budget = DEFAULT_BUDGET_MB * 2**20
    try:
        return min(budget, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 16)
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return budget


def decode_cache() -> DecodeCache:
    """This process's cache (made on first use: ``VISION_TL_DECODE_CACHE_MB`` or ``default_budget()``)."""
    global _cache
    if _cache is None:
        raw = os.environ.get("VISION_TL_DECODE_CACHE_MB")
        if raw is None:
            _cache = DecodeCache(default_budget())
        else:
            try:
                mb = float(raw)
            except ValueError:
                mb = float("nan")
            _cache = DecodeCache(_megabytes(mb, "VISION_TL_DECODE_CACHE_MB"))
    return _cache


def configure(budget_mb: float | None = None) -> DecodeCache:
    """Start a new, empty cache of ``budget_mb`` megabytes (0: off; None: the default) and return it."""
    global _cache
    _cache = DecodeCache(default_budget() if budget_mb is None else _megabytes(budget_mb, "budget_mb"))
    return _cache


def _file_stamp(src: Any) -> tuple | None:
    """What identifies a regular file's current content; None for anything else (bytes, a PIL image)."""
    if not isinstance(src, (str, Path)):
        return None
    try:
        st = os.stat(src)
    except OSError:
        return None  # the decode itself raises the error that names the file
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_rgb_cached(src: Any, draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """``load_rgb(src, draft_size)``, from the cache when the main process decoded this file before.

    Always a writable array of the caller's own: item transforms may change it in place.
    """
    cache = decode_cache()
    stamp = _file_stamp(src) if cache.budget and get_worker_info() is None else None
    if stamp is None:
        return load_rgb(src, draft_size=draft_size)
    key = (os.fspath(src), draft_size)
    arr = cache.get(key, stamp)
    if arr is None:
        arr = load_rgb(src, draft_size=draft_size)
        if cache.put(key, stamp, arr):
            return arr.copy()
        return arr
    return arr.copy()
