"""fastai's ``dl.decode(batch)`` and ``dl.decode_batch(batch)``: a batch back to what a person looks at.

``decode`` undoes the loader's ``Normalize`` (images as ``TensorImage`` in [0, 1] on the CPU) and
types the targets (``TensorCategory`` indices, ``TensorMultiCategory`` one-hot vectors);
``decode_batch`` goes on to one ``(image, label)`` pair per item, the label as the class name (a list
of names for multi-label data, the numbers for regression).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .show import decoded_for_display
from .tensor_types import TensorCategory, TensorImage, TensorMultiCategory

if TYPE_CHECKING:
    from .tfmd_dl import TfmdDL

__all__ = ["decode", "decode_batch"]


def _target(dl: TfmdDL, y: torch.Tensor) -> torch.Tensor:
    y = y.detach().cpu()
    if getattr(dl.dataset, "n_out", None) is not None:  # regression: the numbers as they are
        return y
    return TensorMultiCategory(y) if getattr(dl.dataset, "multi_label", False) else TensorCategory(y)


def decode(dl: TfmdDL, b: tuple | list | torch.Tensor) -> tuple:
    """``(x[, y, ...])`` with ``x`` un-normalized to a ``TensorImage`` in [0, 1] and ``y`` typed."""
    items = tuple(b) if isinstance(b, (tuple, list)) else (b,)
    if not items:
        raise ValueError("decode needs a batch: (x,) or (x, y)")
    x = TensorImage(decoded_for_display(items[0].detach().float(), dl.batch_tfms).cpu())
    rest = tuple(_target(dl, y) if isinstance(y, torch.Tensor) else y for y in items[1:2])
    return (x, *rest, *items[2:])


def _label(dl: TfmdDL, y: torch.Tensor) -> Any:
    vocab = list(getattr(dl.dataset, "vocab", []))
    values = np.asarray(y)
    if getattr(dl.dataset, "n_out", None) is not None:
        return values.tolist()
    if getattr(dl.dataset, "multi_label", False):
        return [vocab[k] for k in np.flatnonzero(values > 0.5)]
    k = int(values)
    return vocab[k] if 0 <= k < len(vocab) else None


def decode_batch(dl: TfmdDL, b: tuple | list | torch.Tensor, max_n: int = 9) -> list[tuple]:
    """The first ``max_n`` items of a batch as ``(TensorImage (C, H, W), label)`` (or ``(image,)``
    when the batch has no targets)."""
    dec = decode(dl, b)
    xs = dec[0][:max_n]
    if len(dec) < 2:
        return [(x,) for x in xs]
    return [(x, _label(dl, y)) for x, y in zip(xs, dec[1][:max_n].as_subclass(torch.Tensor))]
