"""MixUp and CutMix: train on blends of two images and score the blend against both labels.

fastai's semantics: each training batch is paired with a shuffled copy of itself; ``lam`` is drawn
from ``Beta(alpha, alpha)``; the loss is ``lam * loss(pred, y) + (1 - lam) * loss(pred, y_shuffled)``.
Only training batches are mixed: validation sees the plain images and the plain loss.

How it plugs in (the Learner's public contract): ``before_fit`` swaps ``learn.loss_func`` for the
mixing loss (restored in ``after_fit``), ``before_batch`` replaces ``learn.xb``/``learn.yb``. The
random draws use torch's global RNG, so ``torch.manual_seed`` makes a run repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .callbacks import Callback

__all__ = ["CutMix", "MixUp"]


def per_item_loss(loss_func: Callable, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """``loss_func(pred, targ)`` for each item, shape ``(N,)`` (extra target dimensions are averaged).

    Uses the loss's ``reduction='none'`` when it has one, else calls it once per item.
    """
    if getattr(loss_func, "reduction", None) is None:
        return torch.stack([loss_func(p[None], t[None]) for p, t in zip(pred, targ)])
    old = loss_func.reduction
    loss_func.reduction = "none"
    try:
        loss = loss_func(pred, targ)
    finally:
        loss_func.reduction = old
    return loss.reshape(len(pred), -1).mean(1) if loss.ndim > 1 else loss


class _MixHandler(Callback):
    """Shared by ``MixUp``/``CutMix``: the Beta draw, the loss swap, the mixed loss."""

    order = 20  # after ChannelsLast/MixedPrecision have set up the batch

    def __init__(self, alpha: float) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.lam: torch.Tensor | None = None
        self.yb1: tuple[torch.Tensor, ...] = ()
        self._old_lf: Callable | None = None

    def _sample(self, n: int, device: torch.device) -> torch.Tensor:
        a = torch.tensor(self.alpha)
        return torch.distributions.Beta(a, a).sample((n,)).to(device)

    def before_fit(self) -> None:
        self._old_lf, self.learn.loss_func = self.learn.loss_func, self.loss
        self.lam, self.yb1 = None, ()

    def after_fit(self) -> None:
        if self._old_lf is not None:
            self.learn.loss_func, self._old_lf = self._old_lf, None

    def loss(self, pred: torch.Tensor, *yb: torch.Tensor) -> torch.Tensor:
        """The mixing loss while training a mixed batch; the original loss otherwise."""
        lf = self._old_lf
        if not self.learn.training or self.lam is None:
            return lf(pred, *yb)
        lam = self.lam.reshape(-1).float()
        l1, l2 = per_item_loss(lf, pred, yb[0]), per_item_loss(lf, pred, self.yb1[0])
        return (lam * l1 + (1 - lam) * l2).mean()

    def after_batch(self) -> None:
        self.lam = None  # a validation batch, or a loss computed outside fit, is never mixed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha})"


class MixUp(_MixHandler):
    """Blend each training image with a shuffled partner: ``x = lam * x + (1 - lam) * x[perm]``.

    ``lam`` is drawn per item from ``Beta(alpha, alpha)`` and folded to ``max(lam, 1 - lam)`` (fastai),
    so each image keeps at least half of itself.
    """

    def __init__(self, alpha: float = 0.4) -> None:
        super().__init__(alpha)

    def before_batch(self) -> None:
        if not self.learn.training or not self.learn.yb:
            return
        x, y = self.learn.xb[0], self.learn.yb[0]
        lam = self._sample(len(x), x.device)
        lam = torch.maximum(lam, 1 - lam)
        perm = torch.randperm(len(x)).to(x.device)
        w = lam.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        self.learn.xb = (w * x + (1 - w) * x[perm], *self.learn.xb[1:])
        self.lam, self.yb1 = lam, (y[perm],)


class CutMix(_MixHandler):
    """Paste a box from a shuffled partner into each training image; ``lam`` is the kept area.

    One ``lam ~ Beta(alpha, alpha)`` per batch sets the box size (``sqrt(1 - lam)`` of each side);
    the box's centre is uniform, the box is clipped to the image, and ``lam`` becomes the exact
    fraction of pixels kept, which weighs the two labels in the loss.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    @staticmethod
    def box(h: int, w: int, lam: float) -> tuple[int, int, int, int]:
        """``(y1, y2, x1, x2)`` of a box of ``(1 - lam)`` of the area around a uniform random centre."""
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = (int(v) for v in torch.randint(0, h, (1,)).tolist() + torch.randint(0, w, (1,)).tolist())
        return max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)

    def before_batch(self) -> None:
        if not self.learn.training or not self.learn.yb:
            return
        x, y = self.learn.xb[0], self.learn.yb[0]
        h, w = x.shape[-2:]
        lam = float(self._sample(1, torch.device("cpu"))[0])
        perm = torch.randperm(len(x)).to(x.device)
        y1, y2, x1, x2 = self.box(h, w, lam)
        x = x.clone()
        x[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
        kept = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
        self.learn.xb = (x, *self.learn.xb[1:])
        self.lam, self.yb1 = torch.full((len(x),), kept, device=x.device), (y[perm],)

