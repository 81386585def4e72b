"""``show_image`` / ``show_images``: draw a PIL image, an array or a tensor with matplotlib (fastai's names).

Tensors may be CHW or HWC, uint8 (0-255) or float (0-1, clipped); one-channel images are drawn in grey.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["show_image", "show_images"]


def _as_hwc(im: Any) -> np.ndarray:
    if isinstance(im, Image.Image):
        return np.asarray(im)
    if isinstance(im, torch.Tensor):
        t = im.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3):
            t = t.permute(1, 2, 0)
        im = t.float().numpy() if t.dtype not in (torch.uint8,) else t.numpy()
    arr = np.asarray(im)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 1)
    return arr


def show_image(im: Any, ax: Any = None, figsize: tuple[float, float] | None = None, title: str | None = None,
               ctx: Any = None, cmap: str | None = None, **kwargs: Any) -> Any:
    """Draw ``im`` (PIL image, array or tensor) on ``ax`` (or ``ctx``, or a new figure); returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else ctx
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    arr = _as_hwc(im)
    ax.imshow(arr, cmap=cmap if cmap is not None or arr.ndim == 3 else "gray", **kwargs)
    if title is not None:
        ax.set_title(title)
    ax.axis("off")
    return ax


def show_images(ims: Sequence[Any], nrows: int | None = 1, ncols: int | None = None,
                titles: Sequence[str | None] | None = None, figsize: tuple[float, float] | None = None,
                **kwargs: Any) -> Any:
    """Draw several images in a grid (one row by default); returns the figure."""
    import matplotlib.pyplot as plt

    n = max(1, len(ims))
    if ncols is None:
        nrows = nrows or 1
        ncols = math.ceil(n / nrows)
    nrows = nrows if nrows else math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (3 * ncols, 3 * nrows), squeeze=False)
    titles = list(titles) if titles is not None else [None] * len(ims)
    for ax in axes.flat:
        ax.axis("off")
    for ax, im, t in zip(axes.flat, ims, titles):
        show_image(im, ax=ax, title=t, **kwargs)
    fig.tight_layout()
    return fig
