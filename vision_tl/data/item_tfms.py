"""Per-image CPU transforms (run in DataLoader workers): ``Resize`` and ``RandomResizedCrop``.

This is the only module that imports albumentations; it sets ``NO_ALBUMENTATIONS_UPDATE=1`` first so
that importing it never touches the network. Random choices (crop position, scale, ratio) are drawn
here from a ``numpy.random.Generator`` that the DataLoader seeds per item, so a seeded run gives the
same crops whatever the number of workers; the pixel work (resize, pad) is albumentations/OpenCV.
Semantics follow fastai: random crop position on train, centre on valid.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402  (installed with albumentations; used for borders)

from .registry import serializable, tfm_from_dict  # noqa: E402

_BORDERS = {"reflection": cv2.BORDER_REFLECT_101, "zeros": cv2.BORDER_CONSTANT, "border": cv2.BORDER_REPLICATE}
_METHODS = ("crop", "pad", "squish")


class ResizeMethod:
    """fastai's names for ``Resize``'s ``method``: ``Resize(128, ResizeMethod.Squish)``."""

    Crop, Pad, Squish = "crop", "pad", "squish"


class PadMode:
    """fastai's names for ``pad_mode``: ``Resize(128, ResizeMethod.Pad, pad_mode=PadMode.Zeros)``."""

    Zeros, Border, Reflection = "zeros", "border", "reflection"


def _as_size(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """An int ``s`` means ``(s, s)``; sizes are ``(h, w)`` with positive ints."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, (int, np.integer)) for s in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be an int or a (h, w) pair of ints, got {size!r}")
    if min(hw) <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return hw


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


class ItemTransform:
    """Base class: maps a uint8 HWC image to a uint8 HWC image of ``size`` (h, w).

    Subclasses implement ``__call__(img, train, rng=None)``: random on train, deterministic on valid.
    """

    size: tuple[int, int]

    def __init__(self, size: int | Sequence[int]):
        self.size = _as_size(size)
        # prebuilt: the output size never changes; INTER_AREA when shrinking keeps detail
        self._resize = A.Resize(*self.size, interpolation=cv2.INTER_LINEAR, area_for_downscale="image")

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """The smallest decode size (h, w) that keeps quality: the output size."""
        return self.size

    def _resize_to(self, img: np.ndarray) -> np.ndarray:
        if img.shape[:2] == self.size:
            return np.ascontiguousarray(img)
        return self._resize(image=np.ascontiguousarray(img))["image"]

    def __call__(self, img: np.ndarray, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemTransform) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


@serializable
class Resize(ItemTransform):
    """Resize to ``size`` by cropping (default), padding or squishing, as fastai's ``Resize``.

    ``crop`` takes the largest window of the target aspect ratio (random position on train, centre on
    valid) and resizes it; ``pad`` pads the image to the target aspect ratio (``pad_mode``
    "reflection", "zeros" or "border"; random position on train) and resizes; ``squish`` resizes the
    whole image, changing its aspect ratio.
    """

    def __init__(self, size: int | Sequence[int], method: str = "crop", pad_mode: str = "reflection"):
        super().__init__(size)
        if method not in _METHODS:
            raise ValueError(f"Resize method must be one of {_METHODS}, got {method!r}")
        if pad_mode not in _BORDERS:
            raise ValueError(f"Resize pad_mode must be one of {tuple(_BORDERS)}, got {pad_mode!r}")
        self.method, self.pad_mode = method, pad_mode

    def __call__(self, img: np.ndarray, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        h, w = img.shape[:2]
        th, tw = self.size
        if self.method == "squish" or h * tw == w * th:
            return self._resize_to(img)
        pct = _rng(rng).random(2) if train else np.array([0.5, 0.5])
        if self.method == "crop":
            m = min(h / th, w / tw)  # the window of the target ratio that just fits
            ch, cw = min(h, max(1, round(m * th))), min(w, max(1, round(m * tw)))
            top, left = int(pct[0] * (h - ch)), int(pct[1] * (w - cw))
            return self._resize_to(img[top : top + ch, left : left + cw])
        m = max(h / th, w / tw)  # pad: the canvas of the target ratio that just holds the image
        ph, pw = max(h, round(m * th)), max(w, round(m * tw))
        top, left = int(pct[0] * (ph - h)), int(pct[1] * (pw - w))
        padded = cv2.copyMakeBorder(
            np.ascontiguousarray(img), top, ph - h - top, left, pw - w - left, _BORDERS[self.pad_mode], value=0
        )
        return self._resize_to(padded)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "Resize", "size": list(self.size), "method": self.method, "pad_mode": self.pad_mode}


@serializable
class RandomResizedCrop(ItemTransform):
    """Random crop of ``min_scale``..1 of the area with aspect ``ratio``, resized to ``size`` (train).

    On valid it behaves as fastai documents: the whole image is resized to ``size`` plus a margin
    (``val_xtra`` of the size, rounded up to a multiple of 8) and the centre ``size`` is kept.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        min_scale: float = 0.08,
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        val_xtra: float = 0.14,
    ):
        super().__init__(size)
        if not 0 < min_scale <= 1:
            raise ValueError(f"RandomResizedCrop min_scale must be in (0, 1], got {min_scale!r}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomResizedCrop ratio must be (low, high) with 0 < low <= high, got {ratio!r}")
        if val_xtra < 0:
            raise ValueError(f"RandomResizedCrop val_xtra must be >= 0, got {val_xtra!r}")
        self.min_scale, self.ratio, self.val_xtra = float(min_scale), (float(ratio[0]), float(ratio[1])), float(val_xtra)
        xtra = math.ceil(max(self.size) * self.val_xtra / 8) * 8
        self._val_size = (self.size[0] + xtra, self.size[1] + xtra)
        self._val_resize = A.Resize(*self._val_size, interpolation=cv2.INTER_LINEAR, area_for_downscale="image")
        self._val_crop = A.CenterCrop(*self.size)

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """The validation resize size: JPEGs decode at least that large. A small training crop is then
        upsampled from the reduced decode (a little softer than from full resolution, several times faster)."""
        return self._val_size

    def _crop_box(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, ch, cw): torchvision's/fastai's rule, 10 tries then the clipped-ratio centre crop."""
        area = h * w
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            target = area * rng.uniform(self.min_scale, 1.0)
            aspect = math.exp(rng.uniform(*log_ratio))  # width / height
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
        aspect = min(max(w / h, self.ratio[0]), self.ratio[1])
        cw, ch = (w, round(w / aspect)) if w / h <= aspect else (round(h * aspect), h)
        ch, cw = max(1, min(ch, h)), max(1, min(cw, w))
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, img: np.ndarray, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
        if not train:
            return self._val_crop(image=self._val_resize(image=np.ascontiguousarray(img))["image"])["image"]
        top, left, ch, cw = self._crop_box(*img.shape[:2], _rng(rng))
        return self._resize_to(img[top : top + ch, left : left + cw])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "RandomResizedCrop", "size": list(self.size), "min_scale": self.min_scale,
            "ratio": list(self.ratio), "val_xtra": self.val_xtra,
        }


def item_tfm_from_dict(d: dict[str, Any]) -> ItemTransform:
    """Rebuild an item transform from its ``to_dict()`` (e.g. from an exported model's manifest)."""
    return tfm_from_dict(d, ItemTransform, "item transform")


def apply_item_tfms(
    img: np.ndarray, tfms: Sequence[ItemTransform] | None, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Apply ``tfms`` in order to a uint8 HWC image; ``rng`` drives the random choices on train."""
    for t in tfms or ():
        img = t(img, train, rng=rng) if isinstance(t, ItemTransform) else t(img, train)
    return img


def draft_size_for(tfms: Sequence[ItemTransform] | None) -> tuple[int, int] | None:
    """The decode size that the first transform needs (None: decode at full size)."""
    if not tfms:
        return None
    return getattr(tfms[0], "draft_size", None)


def limit_worker_threads() -> None:
    """Keep OpenCV single-threaded inside a DataLoader worker (the workers are the parallelism)."""
    cv2.setNumThreads(1)
