"""fastai's image types: ``PILImage.create(path | bytes | array | tensor)``, ``PILImageBW``, ``to_thumb``.

They are real ``PIL.Image.Image`` objects (so every PIL method and every vision_tl function that
takes a PIL image takes them), decoded with vision_tl's ``open_image`` (EXIF orientation, errors
that name the file) and converted to ``RGB`` (``PILImage``) or ``L`` (``PILImageBW``).
"""

from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .images import open_image

__all__ = ["ImageModule", "PILImage", "PILImageBW", "to_thumb"]


def to_thumb(img: Image.Image, h: int, w: int | None = None) -> Image.Image:
    """A copy of ``img`` shrunk to fit in ``h x w`` (``w`` defaults to ``h``), keeping its aspect ratio."""
    out = img.copy()
    out.thumbnail((w if w is not None else h, h))
    return out


class PILImage(Image.Image):
    """An RGB PIL image with fastai's ``create``, ``shape`` and ``to_thumb``."""

    _mode = "RGB"

    @classmethod
    def create(cls, src: Any) -> PILImage:
        """Open a path, encoded bytes, a PIL image, a uint8 array (HW / HWC) or a uint8 tensor (CHW / HW)."""
        if isinstance(src, torch.Tensor):
            t = src.detach().cpu()
            src = t.permute(1, 2, 0).numpy() if t.ndim == 3 and t.shape[0] in (1, 3) else t.numpy()
        if isinstance(src, np.ndarray):
            if src.dtype != np.uint8:
                raise ValueError(f"PILImage.create: an image array must be uint8 (0-255), got dtype {src.dtype}")
            src = Image.fromarray(src[..., 0] if src.ndim == 3 and src.shape[2] == 1 else src)
        if isinstance(src, bytearray | memoryview):
            src = bytes(src)
        if not isinstance(src, (str, Path, bytes, Image.Image)):
            raise ValueError(f"PILImage.create takes a path, bytes, a PIL image, an array or a tensor, got "
                             f"{type(src).__name__}")
        img = open_image(src).convert(cls._mode) if cls._mode != "RGB" else open_image(src)
        return cls._wrap(img)

    @classmethod
    def _wrap(cls, img: Image.Image) -> PILImage:
        out = cls.__new__(cls)
        out.__dict__.update(img.__dict__)  # share the decoded pixels: no copy
        return out

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, as fastai reports it."""
        return self.size[1], self.size[0]

    def to_thumb(self, h: int, w: int | None = None) -> Image.Image:
        """A copy shrunk to fit in ``h x w``, keeping the aspect ratio."""
        return type(self)._wrap(to_thumb(self, h, w))

    def __repr__(self) -> str:
        return f"{type(self).__name__} mode={self.mode} size={self.size[0]}x{self.size[1]}"


class PILImageBW(PILImage):
    """A single-channel (``L``) PIL image: ``PILImageBW.create(path)``."""

    _mode = "L"


class _Thumb:
    """``to_thumb`` for an image ``Image.open`` returned (mixed into a subclass of its own class)."""

    def to_thumb(self, h: int, w: int | None = None) -> Image.Image:
        """A copy shrunk to fit in ``h x w``, keeping the aspect ratio."""
        return to_thumb(self, h, w)  # type: ignore[arg-type]


@functools.cache
def _with_thumb(cls: type) -> type:
    return type(cls.__name__, (cls, _Thumb), {"__module__": __name__})


class ImageModule(types.ModuleType):
    """PIL's ``Image`` module as ``from vision_tl.all import *`` binds ``Image``: every name is PIL's,
    and ``Image.open`` returns PIL's own (lazy) image with fastai's ``to_thumb`` added.

    Pillow's classes are not patched: the opened image gets a subclass of its own class
    (``JpegImageFile`` stays a ``JpegImageFile``: ``verify``, ``format``, EXIF all as before).
    """

    def __init__(self) -> None:
        super().__init__("PIL.Image", Image.__doc__)

    def __getattr__(self, name: str) -> Any:
        return getattr(Image, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(Image)) | {"open"})

    def open(self, fp: Any, mode: str = "r", formats: Any = None) -> Image.Image:
        """``PIL.Image.open``, with ``to_thumb`` on the result."""
        img = Image.open(fp, mode, formats)
        img.__class__ = _with_thumb(type(img))
        return img

    def __repr__(self) -> str:
        return "<module 'PIL.Image' (Image.open adds fastai's to_thumb)>"
