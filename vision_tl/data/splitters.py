"""Splitters: callables ``items -> (train_idx, valid_idx)``, seeded where random (fastai's names).

``items`` is what ``DataBlock.get_items`` returned: a list (of paths, usually) or a pandas DataFrame,
whose rows (pandas Series) are what a ``FuncSplitter`` function sees. Every splitter returns two
sorted lists of ints; a seeded one returns the same split on every machine and every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RandomSplitter", "TrainTestSplitter", "IndexSplitter", "MaskSplitter", "GrandparentSplitter", "FuncSplitter",
    "ColSplitter", "EndSplitter", "check_valid_pct", "is_dataframe", "as_rows",
]


def is_dataframe(items: Any) -> bool:
    """A pandas DataFrame (checked without importing pandas)."""
    return type(items).__name__ == "DataFrame" and hasattr(items, "iloc") and hasattr(items, "columns")


class _Rows(Sequence):
    """A DataFrame's rows as a sequence of pandas Series (what fastai's getters receive)."""

    def __init__(self, df: Any):
        self.df = df

    def __len__(self) -> int:
        return len(self.df)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        return self.df.iloc[i]

    def __iter__(self) -> Iterator[Any]:
        return (row for _, row in self.df.iterrows())


def as_rows(items: Any) -> Sequence:
    """``items`` as a sequence: a DataFrame's rows (Series), or the items themselves."""
    if is_dataframe(items):
        return _Rows(items)
    return items if isinstance(items, Sequence) else list(items)


def check_valid_pct(valid_pct: float) -> float:
    """``valid_pct`` must be a number in [0, 1)."""
    if isinstance(valid_pct, bool) or not isinstance(valid_pct, (int, float)) or not 0 <= valid_pct < 1:
        raise ValueError(f"valid_pct must be a number in [0, 1), got {valid_pct!r}")
    return float(valid_pct)


def _mask_split(mask: Iterable[Any]) -> tuple[list[int], list[int]]:
    flags = [bool(v) for v in mask]
    return [i for i, v in enumerate(flags) if not v], [i for i, v in enumerate(flags) if v]


class RandomSplitter:
    """Random train/valid split; the same ``seed`` gives the same split on every machine and version.

    The permutation comes from ``numpy.random.default_rng(seed)`` (PCG64, stable across platforms);
    ``seed=None`` draws a fresh one. With ``valid_pct > 0`` and at least 2 items, at least one item goes
    to valid and at least one stays in train.
    """

    def __init__(self, valid_pct: float = 0.2, seed: int | None = None):
        self.valid_pct, self.seed = check_valid_pct(valid_pct), seed

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        n = len(items)
        perm = np.random.default_rng(self.seed).permutation(n)
        cut = int(self.valid_pct * n)
        if self.valid_pct > 0 and n >= 2:
            cut = min(max(cut, 1), n - 1)
        return sorted(perm[cut:].tolist()), sorted(perm[:cut].tolist())

    def __repr__(self) -> str:
        return f"RandomSplitter(valid_pct={self.valid_pct}, seed={self.seed})"


def _count(size: float | int | None, n: int, name: str) -> int | None:
    """scikit-learn's reading of a size: a float in (0, 1) is a fraction of ``n``, an int a count."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise ValueError(f"{name} must be a fraction in (0, 1) or a count, got {size!r}")
    if isinstance(size, float):
        if not 0 < size < 1:
            raise ValueError(f"{name} as a fraction must be in (0, 1), got {size!r}")
        return math.ceil(size * n) if name == "test_size" else math.floor(size * n)
    if not 0 < size <= n:
        raise ValueError(f"{name}={size!r} items but there are only {n} items")
    return int(size)


class TrainTestSplitter:
    """fastai's ``TrainTestSplitter`` (scikit-learn's ``train_test_split`` arguments), without scikit-learn.

    ``test_size``/``train_size``: fractions (test rounded up, train down) or counts. ``stratify``: one
    label per item; each label then keeps its share in both sets (largest remainders; every label with
    two or more items keeps one on each side). Seeded by ``random_state``; the indices are not the ones
    scikit-learn would draw, the proportions are the same.
    """

    def __init__(self, test_size: float | int | None = 0.2, random_state: int | None = None,
                 stratify: Sequence[Any] | None = None, train_size: float | int | None = None, shuffle: bool = True):
        if stratify is not None and not shuffle:
            raise ValueError("TrainTestSplitter: stratify needs shuffle=True (as in scikit-learn)")
        self.test_size, self.train_size, self.random_state = test_size, train_size, random_state
        self.stratify = None if stratify is None else list(stratify)
        self.shuffle = shuffle

    def _sizes(self, n: int) -> tuple[int, int]:
        n_test = _count(self.test_size, n, "test_size")
        n_train = _count(self.train_size, n, "train_size")
        if n_test is None:
            n_test = n - n_train if n_train is not None else math.ceil(0.25 * n)
        if n_train is None:
            n_train = n - n_test
        if n_train + n_test > n or n_train < 1:
            raise ValueError(f"TrainTestSplitter: train {n_train} + test {n_test} items do not fit in {n} items")
        return n_train, n_test

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        n = len(items)
        n_train, n_test = self._sizes(n)
        if not self.shuffle:
            return list(range(n_train)), list(range(n_train, n_train + n_test))
        rng = np.random.default_rng(self.random_state)
        if self.stratify is None:
            perm = rng.permutation(n).tolist()
            return sorted(perm[n_test:n_test + n_train]), sorted(perm[:n_test])
        if len(self.stratify) != n:
            raise ValueError(f"stratify has {len(self.stratify)} labels for {n} items")
        return self._stratified(rng, n_train, n_test)

    def _stratified(self, rng: np.random.Generator, n_train: int, n_test: int) -> tuple[list[int], list[int]]:
        groups: dict[Any, list[int]] = {}
        for i, lab in enumerate(self.stratify or []):
            groups.setdefault(lab, []).append(i)
        keys = sorted(groups, key=str)
        test_take = _apportion([len(groups[k]) for k in keys], n_test)
        train_take = _apportion([len(groups[k]) - t for k, t in zip(keys, test_take)], n_train)
        train, test = [], []
        for k, nt, ntr in zip(keys, test_take, train_take):
            idx = rng.permutation(groups[k]).tolist()
            test += idx[:nt]
            train += idx[nt:nt + ntr]
        return sorted(train), sorted(test)

    def __repr__(self) -> str:
        return f"TrainTestSplitter(test_size={self.test_size}, random_state={self.random_state})"


def _apportion(counts: list[int], total: int) -> list[int]:
    """Split ``total`` over groups in proportion to ``counts`` (largest remainders, capped by each count)."""
    n = sum(counts)
    if n == 0 or total == 0:
        return [0] * len(counts)
    exact = [c * total / n for c in counts]
    take = [min(c, math.floor(e)) for c, e in zip(counts, exact)]
    order = sorted(range(len(counts)), key=lambda k: (-(exact[k] - take[k]), k))
    left = total - sum(take)
    while left > 0:
        progressed = False
        for k in order:
            if left and take[k] < counts[k]:
                take[k] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return take


class _Repr:
    """``Name(arg=value, ...)`` from the instance's attributes (for summaries and messages)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args if len(args) < 80 else args[:77] + '...'})"


class IndexSplitter(_Repr):
    """Valid = the given indices (or a boolean mask), train = the rest."""

    def __init__(self, valid_idx: Iterable[int] | Sequence[bool]):
        self.valid_idx = list(valid_idx)

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        n = len(items)
        if self.valid_idx and all(isinstance(v, (bool, np.bool_)) for v in self.valid_idx):
            if len(self.valid_idx) != n:
                raise ValueError(f"valid mask has {len(self.valid_idx)} entries for {n} items")
            valid = {i for i, v in enumerate(self.valid_idx) if v}
        else:
            valid = {int(i) for i in self.valid_idx}
            bad = [i for i in valid if not 0 <= i < n]
            if bad:
                raise ValueError(f"valid indices out of range for {n} items: {sorted(bad)[:5]}")
        return [i for i in range(n) if i not in valid], sorted(valid)


class MaskSplitter(_Repr):
    """Valid = the items whose ``mask`` entry is true."""

    def __init__(self, mask: Sequence[Any]):
        self.mask = [bool(v) for v in mask]

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        if len(self.mask) != len(items):
            raise ValueError(f"mask has {len(self.mask)} entries for {len(items)} items")
        return _mask_split(self.mask)


class GrandparentSplitter(_Repr):
    """Split by the name of the folder two levels up (``<train_name>/<class>/<file>``); names may be lists."""

    def __init__(self, train_name: str | Sequence[str] = "train", valid_name: str | Sequence[str] = "valid"):
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence[str | Path]) -> tuple[list[int], list[int]]:
        gp = [Path(o).parent.parent.name for o in items]

        def names(x: str | Sequence[str]) -> set[str]:
            return {x} if isinstance(x, str) else set(x)

        tr, va = names(self.train_name), names(self.valid_name)
        return [i for i, g in enumerate(gp) if g in tr], [i for i, g in enumerate(gp) if g in va]


class FuncSplitter(_Repr):
    """Valid = the items for which ``func(item)`` is true (a DataFrame's rows are passed as Series)."""

    def __init__(self, func: Callable[[Any], Any]):
        if not callable(func):
            raise TypeError(f"FuncSplitter needs a function item -> bool, got {func!r}")
        self.func = func

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        flags = []
        for o in as_rows(items):
            try:
                flags.append(self.func(o))
            except Exception as e:  # noqa: BLE001 - re-raised naming the item
                raise ValueError(f"FuncSplitter: {getattr(self.func, '__name__', self.func)!s} raised "
                                 f"{type(e).__name__}: {e} on item {_short(o)}") from e
        return _mask_split(flags)


class ColSplitter(_Repr):
    """Valid = the DataFrame rows whose column ``col`` (a name or a position) is true (or equals ``on``)."""

    def __init__(self, col: str | int = "is_valid", on: Any = None):
        self.col, self.on = col, on

    def __call__(self, items: Any) -> tuple[list[int], list[int]]:
        if not is_dataframe(items):
            raise TypeError(f"ColSplitter needs the items to be a pandas DataFrame, got {type(items).__name__}")
        cols = list(items.columns)
        if self.col in cols:
            values = items[self.col]
        elif isinstance(self.col, int) and not isinstance(self.col, bool) and -len(cols) <= self.col < len(cols):
            values = items.iloc[:, self.col]
        else:
            raise ValueError(f"ColSplitter: col={self.col!r} is not a column of the table; columns are {cols!r}")
        values = values.tolist()
        return _mask_split([v == self.on for v in values] if self.on is not None else values)


class EndSplitter(_Repr):
    """The last (or first) ``valid_pct`` of the items, in order, is the validation set."""

    def __init__(self, valid_pct: float = 0.2, valid_last: bool = True):
        self.valid_pct, self.valid_last = check_valid_pct(valid_pct), valid_last

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        n = len(items)
        cut = int(n * self.valid_pct)
        idx = list(range(n))
        return (idx[:n - cut], idx[n - cut:]) if self.valid_last else (idx[cut:], idx[:cut])


def _short(o: Any, n: int = 120) -> str:
    text = repr(o.to_dict()) if hasattr(o, "to_dict") else repr(o)
    return text if len(text) <= n else text[: n - 3] + "..."
