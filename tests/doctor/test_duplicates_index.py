"""The near-duplicate index finds exactly the pairs a full comparison finds, without comparing all pairs."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vision_tl.doctor.duplicates import exact_groups, near_groups, near_pairs


def _brute(hashes: list[int], d: int) -> set[tuple[int, int]]:
    return {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
            if bin(hashes[i] ^ hashes[j]).count("1") <= d}


@pytest.mark.parametrize("d", [0, 3, 8])
def test_multi_index_hashing_equals_brute_force(d):
    rng = np.random.default_rng(d)
    base = [int(x) for x in rng.integers(0, 2**63, 300, dtype=np.int64)]
    hashes = list(base)
    for k in range(60):  # copies a few bits away, some within d, some just beyond
        flips = rng.choice(64, int(rng.integers(0, d + 3)), replace=False)
        hashes.append(base[k] ^ int(sum(1 << int(b) for b in flips)))
    hashes.append(None)  # an unreadable file has no hash
    found = near_pairs(hashes, d)
    assert found == _brute(hashes[:-1], d) and len(found) >= 15


def test_groups_join_chains_and_exact_groups_need_equal_digests():
    assert near_groups(6, {(0, 2), (2, 5), (3, 4)}) == [[0, 2, 5], [3, 4]]
    assert exact_groups(["a", "b", "a", None, None, "b", "c"]) == [[0, 2], [1, 5]]
    with pytest.raises(ValueError, match="max_distance"):
        near_pairs([1, 2], 64)


def test_missing_extra_says_what_to_install(monkeypatch):
    from vision_tl.doctor.deps import require

    monkeypatch.setitem(sys.modules, "cleanlab", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'vision_tl\[doctor\]'"):
        require("cleanlab")
