"""Blocks: what the input and the target of a ``DataBlock`` are, and how targets are read and encoded.

``ImageBlock`` is the input (any image file, decoded to RGB uint8). The target blocks turn what
``get_y`` returns into the dataset's labels: ``CategoryBlock`` (one class per image, int64 targets),
``MultiCategoryBlock`` (a set of classes per image, float32 one-hot targets) and ``RegressionBlock``
(float32 targets). Each has ``read`` (one raw label, checked), ``make_vocab`` (over the labels of the
items in the split) and ``encode``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .datasets import ImageDataset
from .sources import make_vocab, split_labels

__all__ = ["ImageBlock", "CategoryBlock", "MultiCategoryBlock", "PointBlock", "RegressionBlock", "RegressionDataset"]


def is_missing(value: Any) -> bool:
    """None or a NaN (an empty cell of a DataFrame)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class ImageBlock:
    """The input: an image file (or bytes, or a PIL image), decoded to RGB uint8 (JPEG draft mode when shrinking).

    ``cls`` (fastai's ``PILImage``/``PILImageBW``) is accepted for compatibility; images are always RGB.
    """

    def __init__(self, cls: Any = None):
        self.cls = cls

    def __repr__(self) -> str:
        return "ImageBlock()"


class CategoryBlock:
    """One class per image. ``vocab``: the classes in order (default: the sorted labels found).

    Labels are kept as strings (``True`` becomes ``"True"``); ``sort=False`` keeps first-seen order.
    """

    kind = "single"

    def __init__(self, vocab: Sequence[Any] | None = None, sort: bool = True, add_na: bool = False):
        if add_na:
            raise ValueError("CategoryBlock(add_na=True) is not supported: every item needs a known class")
        self.vocab = None if vocab is None else [str(v) for v in vocab]
        self.sort = sort

    def read(self, y: Any) -> str:
        if is_missing(y):
            raise ValueError("no label (None or an empty cell)")
        return str(y)

    def make_vocab(self, labels: Sequence[str], vocab: Sequence[str] | None = None) -> list[str]:
        given = vocab if vocab is not None else self.vocab
        if given is None and not self.sort:
            return list(dict.fromkeys(labels))
        return make_vocab(labels, given)

    def encode(self, labels: Sequence[str | None], vocab: Sequence[str]) -> list[int]:
        index = {v: k for k, v in enumerate(vocab)}
        return [index.get(lab, -1) if lab is not None else -1 for lab in labels]  # -1: outside the split

    def decode(self, target: Any, vocab: Sequence[str]) -> str:
        return str(vocab[int(target)])

    def __repr__(self) -> str:
        return f"CategoryBlock(vocab={self.vocab!r})"


class MultiCategoryBlock:
    """A set of classes per image (any number, none included); targets are float32 one-hot vectors.

    ``get_y`` returns a list of labels, or a string split on ``label_delim`` (default: whitespace), or
    with ``encoded=True`` a 0/1 vector over ``vocab`` (then required).
    """

    kind = "multi"

    def __init__(self, encoded: bool = False, vocab: Sequence[Any] | None = None, add_na: bool = False,
                 label_delim: str | None = None):
        if add_na:
            raise ValueError("MultiCategoryBlock(add_na=True) is not supported")
        if encoded and vocab is None:
            raise ValueError("MultiCategoryBlock(encoded=True) needs vocab= (the class of each position)")
        self.encoded, self.label_delim = encoded, label_delim
        self.vocab = None if vocab is None else [str(v) for v in vocab]

    def read(self, y: Any) -> list[str]:
        if self.encoded:
            flags = np.asarray(y, dtype=np.float32).reshape(-1)
            if len(flags) != len(self.vocab or []):
                raise ValueError(f"an encoded label has {len(flags)} values for a vocab of {len(self.vocab or [])}")
            return [v for v, f in zip(self.vocab or [], flags) if f > 0.5]
        if is_missing(y):
            return []
        if isinstance(y, str):
            return split_labels(y, self.label_delim) if self.label_delim else y.split()
        if isinstance(y, (list, tuple, set, np.ndarray)) or hasattr(y, "tolist"):
            values = y.tolist() if hasattr(y, "tolist") else list(y)
            return [str(v) for v in values if not is_missing(v)]
        raise ValueError(f"a multi-label target must be a list of labels or a delimited string, got {y!r}")

    def make_vocab(self, labels: Sequence[list[str]], vocab: Sequence[str] | None = None) -> list[str]:
        return make_vocab([lab for labs in labels for lab in labs], vocab if vocab is not None else self.vocab)

    def encode(self, labels: Sequence[list[str] | None], vocab: Sequence[str]) -> list[list[int]]:
        index = {v: k for k, v in enumerate(vocab)}
        return [[index[lab] for lab in labs if lab in index] if labs is not None else [] for labs in labels]

    def decode(self, target: Any, vocab: Sequence[str]) -> str:
        hot = np.asarray(target).reshape(-1)
        return ";".join(str(vocab[k]) for k in np.flatnonzero(hot > 0.5))

    def __repr__(self) -> str:
        return f"MultiCategoryBlock(encoded={self.encoded}, vocab={self.vocab!r})"


class RegressionBlock:
    """Float targets: one number per image, or ``n_out`` numbers (float32 ``(N,)`` or ``(N, n_out)`` batches)."""

    kind = "regression"

    def __init__(self, n_out: int | None = None):
        if n_out is not None and (isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1):
            raise ValueError(f"n_out must be a positive int, got {n_out!r}")
        self.n_out = n_out

    def read(self, y: Any) -> tuple[float, ...]:
        if is_missing(y):
            raise ValueError("no target (None or an empty cell)")
        try:
            values = np.asarray(y.tolist() if hasattr(y, "tolist") else y, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            values = np.array([np.nan])
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"a regression target must be finite numbers, got {y!r}")
        return tuple(float(v) for v in values)

    def make_vocab(self, labels: Sequence[tuple[float, ...]], vocab: Sequence[str] | None = None) -> list[str]:
        self.out_size(labels)  # checks that every target has the same size
        return []

    def out_size(self, labels: Sequence[tuple[float, ...]]) -> int:
        """``n_out``, or the size of the targets found (all the same, or a ValueError)."""
        sizes = sorted({len(t) for t in labels})
        n_out = self.n_out or (sizes[0] if sizes else 1)
        if sizes and sizes != [n_out]:
            raise ValueError(f"regression targets have {sizes} values each, expected {n_out} (n_out)")
        return n_out

    def encode(self, labels: Sequence[tuple[float, ...] | None], vocab: Sequence[str]) -> list[tuple[float, ...]]:
        nan = (float("nan"),) * (self.n_out or 1)
        return [lab if lab is not None else nan for lab in labels]

    def decode(self, target: Any, vocab: Sequence[str]) -> str:
        values = np.asarray(target, dtype=np.float64).reshape(-1)
        return ", ".join(f"{v:.4g}" for v in values)

    def __repr__(self) -> str:
        return f"RegressionBlock(n_out={self.n_out})"


class PointBlock:
    """fastai's keypoint target (the BIWI head-pose chapter): out of scope here, said at once."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise NotImplementedError(
            "PointBlock: keypoint regression (points in an image, fastai's BIWI head-pose example) is out of "
            "scope for vision_tl, which classifies and regresses whole images (see the README's 'Coming from "
            "fastai'); for a fixed number of numbers per image use RegressionBlock(n_out=...) with a get_y "
            "returning them, which does not move points when images are flipped, cropped or rotated")


class RegressionDataset(ImageDataset):
    """An :class:`ImageDataset` whose targets are floats: ``ds[i]`` is ``(uint8 HWC, float32 array)``.

    The array has shape ``()`` with ``n_out=1`` (batches ``(N,)``), else ``(n_out,)`` (batches ``(N, n_out)``).
    """

    def __init__(self, items: Sequence[Any], targets: Sequence[Sequence[float]] | None, n_out: int,
                 item_tfms: Any = None, train: bool = False, on_bad_image: str = "warn"):
        super().__init__(items, None, [], item_tfms, train, on_bad_image)
        if targets is not None and len(targets) != len(self.items):
            raise ValueError(f"{len(self.items)} items but {len(targets)} targets")
        self.labels = None if targets is None else [tuple(float(v) for v in t) for t in targets]
        self.n_out = n_out

    def target(self, i: int) -> np.ndarray:
        if self.labels is None:
            values = np.full(self.n_out, np.nan, np.float32)
        else:
            values = np.asarray(self.labels[i], np.float32)
        return values.reshape(()) if self.n_out == 1 else values
