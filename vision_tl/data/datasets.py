"""The image dataset (decode + item transforms, in a worker or the main process) and the uint8 collate function.

Bad images in the training set (``on_bad_image``): ``"warn"`` (default) skips the file with a
``warnings.warn`` naming it, once per file and process, and uses the next item instead, so one
corrupt file in 10,000 does not stop a long run; ``"raise"`` stops with an :class:`ImageError` naming
the file. Outside training (validation, ``test_dl``) a bad file always raises: a substitute there would
count one image twice in the metrics and shift every prediction after it onto the wrong file. Call
:func:`vision_tl.verify_images` beforehand to find (and remove) such files.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..basics import CategoryMap
from .decode_cache import load_rgb_cached
from .images import ImageError
from .item_tfms import ItemTransform, apply_item_tfms, draft_size_for

__all__ = ["ImageDataset", "collate_uint8"]

_BAD_IMAGE_MODES = ("warn", "raise")
_MAX_SUBSTITUTES = 20  # consecutive bad files tolerated before giving up


class ImageDataset(Dataset):
    """Items (paths, or anything :func:`open_image` takes) with integer labels into ``vocab``.

    ``ds[i]`` is ``(uint8 HWC array, label)``; the label is -1 for unlabelled items. With
    ``multi_label=True`` each label is a sequence of indices into ``vocab`` (any number, none included)
    and ``ds[i]``'s label is its float32 one-hot vector of length ``len(vocab)``. ``ds[(i, seed)]``
    draws the random item transforms from ``numpy.random.default_rng(seed)`` and returns
    ``(array, label, seed)`` so that the collate function can seed the batch transforms.
    """

    def __init__(
        self, items: Sequence[Any], labels: Sequence[int] | None, vocab: Sequence[str],
        item_tfms: Sequence[ItemTransform] | None = None, train: bool = False, on_bad_image: str = "warn",
        multi_label: bool = False,
    ):
        if on_bad_image not in _BAD_IMAGE_MODES:
            raise ValueError(f"on_bad_image must be one of {_BAD_IMAGE_MODES}, got {on_bad_image!r}")
        if labels is not None and len(labels) != len(items):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        self.items = list(items)
        self.multi_label = multi_label
        if labels is None:
            self.labels = None
        elif multi_label:
            self.labels = [tuple(int(k) for k in y) for y in labels]
        else:
            self.labels = [int(y) for y in labels]
        self.vocab, self.train = CategoryMap(vocab), train
        # a list is kept as is: train, valid and test datasets share one list of item transforms
        self.item_tfms = item_tfms if isinstance(item_tfms, list) else list(item_tfms or [])
        self.on_bad_image = on_bad_image
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    def with_item_tfms(self, item_tfms: list) -> ImageDataset:
        """A copy on the same items and labels with other item transforms (and no bad image warned yet)."""
        ds = copy.copy(self)
        ds.item_tfms, ds._warned = item_tfms, set()
        return ds

    def load(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Decode item ``i`` (in the main process, once per file: ``decode_cache.py``) and apply the item
        transforms (raises :class:`ImageError`)."""
        img = load_rgb_cached(self.items[i], draft_size=draft_size_for(self.item_tfms))
        return apply_item_tfms(img, self.item_tfms, self.train, rng=rng)

    def target(self, i: int) -> int | np.ndarray:
        """Item ``i``'s label: an int (-1 when unlabelled), or a float32 one-hot vector when multi-label."""
        if self.labels is None:
            return np.full(len(self.vocab), -1, np.float32) if self.multi_label else -1
        if not self.multi_label:
            return self.labels[i]
        hot = np.zeros(len(self.vocab), np.float32)
        hot[list(self.labels[i])] = 1.0
        return hot

    def __getitem__(self, key: int | tuple[int, Any]) -> tuple:
        i, seed = key if isinstance(key, tuple) else (key, None)
        rng = np.random.default_rng(seed) if self.train else None
        j = int(i)
        for _ in range(min(_MAX_SUBSTITUTES, len(self))):
            try:
                item = self.load(j, rng), self.target(j)
                return (*item, seed) if isinstance(key, tuple) else item
            except ImageError as e:
                if self.on_bad_image == "raise":
                    raise
                if not self.train:  # results must line up with the files: no substitutes here
                    raise ImageError(e.path, f"{e.reason} (outside training every file is used as given: "
                                     "remove it, or find all such files with verify_images)") from None
                if str(e.path) not in self._warned:
                    self._warned.add(str(e.path))
                    warnings.warn(f"skipping bad image: {e} (using another item instead)", stacklevel=2)
                j = (j + 1) % len(self)
        raise ImageError(None, f"{_MAX_SUBSTITUTES} bad images in a row from item {i}: run verify_images on the data")


def collate_uint8(batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack uint8 HWC images into a uint8 NCHW tensor (channels-last memory) and labels into int64
    (or one-hot float32 ``(N, C)`` targets for a multi-label set)."""
    imgs, ys = [b[0] for b in batch], [b[1] for b in batch]
    shapes = sorted({im.shape for im in imgs})
    if len(shapes) > 1:
        raise ValueError(
            f"images in a batch have different sizes {shapes[:3]}: pass item_tfms=Resize(size) (or another "
            "item transform) so that every image comes out the same size"
        )
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    if isinstance(ys[0], np.ndarray):
        return x, torch.from_numpy(np.stack(ys))
    return x, torch.tensor(ys, dtype=torch.int64)
