"""Exact duplicates (the same bytes) and near duplicates (perceptual hashes a few bits apart), as groups.

Near-duplicate search is multi-index hashing: with a distance limit of ``d`` bits, the 64-bit hash is
cut into ``d + 1`` bands, and two hashes within ``d`` bits agree exactly on at least one band
(pigeonhole). Only files sharing a band value are compared, so the work grows with the bucket sizes,
not with the square of the number of files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

__all__ = ["exact_groups", "near_pairs", "near_groups"]

def exact_groups(digests: Sequence[str | None]) -> list[list[int]]:
    """Indices of files with the same bytes, groups of two or more, in file order."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        if d is not None:
            by[d].append(i)
    return sorted((g for g in by.values() if len(g) > 1), key=lambda g: g[0])


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def _bands(max_distance: int) -> list[tuple[int, int]]:
    n = max_distance + 1
    edges = np.linspace(0, 64, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def near_pairs(hashes: Sequence[int | None], max_distance: int = 8, block: int = 2048) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose hashes differ in at most ``max_distance`` of 64 bits."""
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in [0, 63], got {max_distance}")
    idx = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    if len(idx) < 2:
        return set()
    h = np.array([hashes[i] for i in idx], dtype=np.uint64)
    pairs: set[tuple[int, int]] = set()
    for lo, hi in _bands(max_distance):
        key = (h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        sk = key[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        ends = np.r_[starts[1:], len(sk)]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = order[s:e]
            hm = h[members]
            for r in range(0, len(members), block):  # a huge bucket (blank images) in row blocks
                d = _popcount(hm[r:r + block, None] ^ hm[None, :])
                a, b = np.nonzero(d <= max_distance)
                keep = (a + r) < b
                for i, j in zip(idx[members[a[keep] + r]], idx[members[b[keep]]]):
                    pairs.add((int(min(i, j)), int(max(i, j))))
    return pairs


def near_groups(n: int, pairs: set[tuple[int, int]]) -> list[list[int]]:
    """Connected groups (two or more files) of the near pairs, in file order."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in sorted(pairs):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    by: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        by[find(i)].append(i)
    return sorted((g for g in by.values() if len(g) > 1), key=lambda g: g[0])
