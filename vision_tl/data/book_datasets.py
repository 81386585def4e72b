"""What ``DataBlock.datasets`` shows a person stepping through the fastai book's multi-label chapter.

Without blocks, fastai's ``DataBlock`` passes items through unchanged: ``DataBlock().datasets(df)``
gives ``(row, row)`` pairs, ``get_x``/``get_y`` give whatever they return (a file name, a label
string), and nothing is opened or checked until a block says how to decode. :class:`RawDatasets` is
that. With blocks, ``dsets.train[i]`` is fastai's ``(PILImage, TensorCategory | TensorMultiCategory)``:
:class:`ItemView` shows one decoded item that way, while the loaders keep using the fast dataset
underneath (uint8 arrays, item transforms in workers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..basics import L
from .datasets import ImageDataset
from .pil_image import PILImage
from .tensor_types import TensorCategory, TensorMultiCategory

__all__ = ["ItemView", "RawDatasets"]


class ItemView:
    """A dataset as fastai shows it: ``view[i]`` is ``(PILImage, typed target)`` (no item transforms);
    every other attribute (``items``, ``vocab``, ``labels``, ...) is the underlying dataset's."""

    def __init__(self, ds: ImageDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[PILImage, torch.Tensor]:
        if not -len(self.ds) <= int(i) < len(self.ds):
            raise IndexError(f"item {i} of a dataset of {len(self.ds)}")
        i = int(i) % len(self.ds)
        img = PILImage.create(self.ds.items[i])
        y = self.ds.target(i)
        if getattr(self.ds, "n_out", None) is not None:  # regression
            return img, torch.as_tensor(y, dtype=torch.float32)
        return img, (TensorMultiCategory(torch.as_tensor(y)) if self.ds.multi_label else TensorCategory(int(y)))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getattr__(self, name: str) -> Any:
        if name == "ds":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.ds, name)

    def __repr__(self) -> str:
        return f"(#{len(self)}) [{', '.join(repr(self[i]) for i in range(min(2, len(self))))}{', ...' if len(self) > 2 else ''}]"


class RawDatasets:
    """Items passed through a ``DataBlock`` without blocks: ``train``/``valid`` are ``L`` of ``(x, y)``
    pairs, ``x = get_x(item)`` (the item itself without ``get_x``), ``y`` likewise with ``get_y``."""

    def __init__(self, rows: Sequence[Any], splits: tuple[list[int], list[int]], get_x: Callable | None,
                 get_y: Callable | None):
        self.splits = splits

        def pair(row: Any) -> tuple[Any, Any]:
            return (get_x(row) if get_x else row), (get_y(row) if get_y else row)

        self.train = L(pair(rows[i]) for i in splits[0])
        self.valid = L(pair(rows[i]) for i in splits[1])

    def __len__(self) -> int:
        return len(self.train) + len(self.valid)

    def __getitem__(self, i: int) -> L:
        return (self.train, self.valid)[i]

    def __repr__(self) -> str:
        return (f"RawDatasets(train={len(self.train)} items, valid={len(self.valid)} items; no blocks: the items "
                "pass through, add blocks=(ImageBlock, CategoryBlock | MultiCategoryBlock) to decode them)")
