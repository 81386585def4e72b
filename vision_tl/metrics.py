"""Classification metrics, computed over the whole validation set.

A metric is any callable ``metric(preds, targs) -> float | Tensor`` where ``preds`` are the
model's outputs ``(N, C)`` for the whole set and ``targs`` the int64 labels ``(N,)``; its column
name in the epoch table is ``metric.name`` if set, else ``metric.__name__``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def _check(preds: Tensor, targs: Tensor) -> None:
    if preds.ndim != 2 or targs.ndim != 1 or len(preds) != len(targs):
        raise ValueError(
            f"metrics expect preds (N, C) and targets (N,), got {tuple(preds.shape)} and {tuple(targs.shape)}"
        )


def accuracy(preds: Tensor, targs: Tensor) -> Tensor:
    """Fraction of items whose arg-max prediction is the target."""
    _check(preds, targs)
    return (preds.argmax(dim=-1) == targs).float().mean()


def error_rate(preds: Tensor, targs: Tensor) -> Tensor:
    """``1 - accuracy``."""
    return 1 - accuracy(preds, targs)


def top_k_accuracy(preds: Tensor, targs: Tensor, k: int = 5) -> Tensor:
    """Fraction of items whose target is among the ``k`` highest predictions (``k`` capped at C)."""
    _check(preds, targs)
    k = min(k, preds.shape[-1])
    return (preds.topk(k, dim=-1).indices == targs[:, None]).any(dim=-1).float().mean()


def confusion_matrix(preds: Tensor, targs: Tensor, n_classes: int | None = None) -> Tensor:
    """``cm[t, p]`` = number of items of class ``t`` predicted as ``p``."""
    _check(preds, targs)
    n = n_classes or preds.shape[-1]
    idx = targs.long() * n + preds.argmax(dim=-1)
    return torch.bincount(idx.cpu(), minlength=n * n).reshape(n, n)


class _MacroMetric:
    """Macro average over classes of a per-class score from the confusion matrix."""

    name = "macro"

    def __init__(self, average: str = "macro") -> None:
        if average != "macro":
            raise ValueError(f"{type(self).__name__}: only average='macro' is supported, got {average!r}")
        self.average = average

    def per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, preds: Tensor, targs: Tensor) -> Tensor:
        cm = confusion_matrix(preds, targs).double()
        tp = cm.diag()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
        present = (cm.sum(1) + cm.sum(0)) > 0  # classes absent from both targets and preds don't count
        return self.per_class(tp, fp, fn)[present].mean().float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(average={self.average!r})"


def _div(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(b > 0, a / b.clamp(min=1e-12), torch.zeros_like(a))


class Precision(_MacroMetric):
    """Macro precision: per class ``tp / (tp + fp)`` (0 when nothing was predicted), averaged."""

    name = "precision"

    def per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _div(tp, tp + fp)


class Recall(_MacroMetric):
    """Macro recall: per class ``tp / (tp + fn)``, averaged."""

    name = "recall"

    def per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _div(tp, tp + fn)


class F1Score(_MacroMetric):
    """Macro F1: per class ``2 tp / (2 tp + fp + fn)``, averaged (as sklearn's ``f1_score(average='macro')``)."""

    name = "f1_score"

    def per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _div(2 * tp, 2 * tp + fp + fn)


def metric_name(m: object) -> str:
    """The column name of a metric (a ``functools.partial`` is named after the function it wraps)."""
    while isinstance(m, functools.partial):
        m = m.func
    return getattr(m, "name", None) or getattr(m, "__name__", None) or type(m).__name__
