"""fastai's typed tensors, for notebooks: ``TensorImage`` (with ``.show``), ``TensorCategory``,
``TensorMultiCategory``.

They are ``torch.Tensor`` subclasses (every torch function takes them; results keep the type) with
fastai's names in their repr, so ``dsets.train[0]`` reads as it does in the book and
``torch.where(y == 1.)`` works on the target. vision_tl's own pipeline uses plain tensors.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["TensorCategory", "TensorImage", "TensorMultiCategory"]


class _Typed(torch.Tensor):
    """A tensor that keeps its class through torch operations."""

    @staticmethod
    def __new__(cls, x: Any, **kwargs: Any) -> _Typed:
        t = x if isinstance(x, torch.Tensor) and not kwargs else torch.as_tensor(x, **kwargs)
        return t.as_subclass(cls)

    def __deepcopy__(self, memo: dict) -> _Typed:
        return type(self)(self.as_subclass(torch.Tensor).clone())

    def __repr__(self, **kwargs: Any) -> str:
        body = repr(self.as_subclass(torch.Tensor))
        return type(self).__name__ + body[len("tensor"):] if body.startswith("tensor") else body


class TensorImage(_Typed):
    """An image tensor ``(C, H, W)`` (float in [0, 1], or uint8); ``show(ctx=ax)`` draws it."""

    def show(self, ctx: Any = None, title: str | None = None, **kwargs: Any) -> Any:
        """Draw the image on the matplotlib axes ``ctx`` (a new one when None); returns the axes."""
        import matplotlib.pyplot as plt

        t = self.as_subclass(torch.Tensor).detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        if t.ndim == 3 and t.shape[2] == 1:
            t = t[..., 0]
        t = t.float() / 255 if t.dtype == torch.uint8 else t.float().clamp(0, 1)
        ax = ctx if ctx is not None else plt.subplots()[1]
        ax.imshow(t.numpy(), **({"cmap": "gray"} if t.ndim == 2 else {}), **kwargs)
        ax.axis("off")
        if title is not None:
            ax.set_title(title)
        return ax


class TensorCategory(_Typed):
    """A class index (int64), as ``dsets.train[i][1]`` for a ``CategoryBlock``."""


class TensorMultiCategory(_Typed):
    """A float one-hot vector over the vocab, as ``dsets.train[i][1]`` for a ``MultiCategoryBlock``."""
