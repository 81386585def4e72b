"""Classification metrics, computed over the whole validation set.

A metric is any callable ``metric(preds, targs) -> float | Tensor`` where ``preds`` are the
model's outputs ``(N, C)`` for the whole set and ``targs`` the int64 labels ``(N,)`` (single-label) or
the one-hot float targets ``(N, C)`` (multi-label: the ``*_multi`` / ``*Multi`` metrics); its column
name in the epoch table is ``metric.name`` if set, else ``metric.__name__``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def _check(preds: Tensor, targs: Tensor) -> None:
    if targs.ndim == 2 and targs.shape == preds.shape:
        raise ValueError(f"this metric is for single-label targets (N,), got multi-label targets {tuple(targs.shape)}: "
                         "use accuracy_multi, F1ScoreMulti, PrecisionMulti or RecallMulti")
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


# ------------------------------------------------------------------------------------ multi-label
def _multi_hot(preds: Tensor, targs: Tensor, thresh: float, sigmoid: bool) -> tuple[Tensor, Tensor]:
    """Thresholded predictions and targets as bool ``(N, C)`` (``preds`` are logits when ``sigmoid``)."""
    if preds.shape != targs.shape or preds.ndim != 2:
        raise ValueError(f"multi-label metrics expect preds and one-hot targets of the same shape (N, C), got "
                         f"{tuple(preds.shape)} and {tuple(targs.shape)}")
    probs = preds.float().sigmoid() if sigmoid else preds.float()
    return probs > thresh, targs.bool()


def accuracy_multi(inp: Tensor, targ: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Fraction of (item, class) pairs predicted right: ``sigmoid(inp) > thresh`` equals the target.

    fastai's ``accuracy_multi``; use ``partial(accuracy_multi, thresh=0.2)`` for another threshold.
    """
    pred, targ = _multi_hot(inp, targ, thresh, sigmoid)
    return (pred == targ).float().mean()


def multilabel_confusion_matrix(preds: Tensor, targs: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """``(C, 2, 2)`` counts, one 2x2 matrix per class laid out as sklearn's ``[[tn, fp], [fn, tp]]``."""
    pred, targ = _multi_hot(preds, targs, thresh, sigmoid)
    tp, fp = (pred & targ).sum(0), (pred & ~targ).sum(0)
    fn, tn = (~pred & targ).sum(0), (~pred & ~targ).sum(0)
    return torch.stack([torch.stack([tn, fp], -1), torch.stack([fn, tp], -1)], 1).cpu()


_AVERAGES = ("macro", "micro", "weighted", "samples")


class _MultiMetric:
    """A per-class score of thresholded multi-label predictions, averaged as sklearn does.

    ``average``: ``"macro"`` (mean over classes), ``"micro"`` (counts pooled over classes),
    ``"weighted"`` (mean weighted by each class's number of true labels), ``"samples"`` (the score of
    each item's label set, averaged over items). A zero denominator scores 0 (sklearn's
    ``zero_division=0``), so a class never present nor predicted pulls the macro average down.
    """

    name = "multi"

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, average: str = "macro") -> None:
        if average not in _AVERAGES:
            raise ValueError(f"{type(self).__name__}: average must be one of {_AVERAGES}, got {average!r}")
        self.thresh, self.sigmoid, self.average = thresh, sigmoid, average

    def score(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        raise NotImplementedError

    def per_class(self, preds: Tensor, targs: Tensor) -> Tensor:
        """The score of each class ``(C,)``."""
        pred, targ = _multi_hot(preds, targs, self.thresh, self.sigmoid)
        return self.score(*_counts(pred, targ, 0))

    def __call__(self, preds: Tensor, targs: Tensor) -> Tensor:
        pred, targ = _multi_hot(preds, targs, self.thresh, self.sigmoid)
        if self.average == "samples":
            return self.score(*_counts(pred, targ, 1)).mean().float()
        tp, fp, fn = _counts(pred, targ, 0)
        if self.average == "micro":
            return self.score(tp.sum(), fp.sum(), fn.sum()).float()
        scores = self.score(tp, fp, fn)
        if self.average == "weighted":
            support = tp + fn
            return _div((scores * support).sum(), support.sum()).float()
        return scores.mean().float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(thresh={self.thresh}, sigmoid={self.sigmoid}, average={self.average!r})"


def _counts(pred: Tensor, targ: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """``tp, fp, fn`` summed over ``dim`` (0: per class, 1: per item), as float64."""
    return tuple((a & b).sum(dim).double() for a, b in ((pred, targ), (pred, ~targ), (~pred, targ)))


class PrecisionMulti(_MultiMetric):
    """Multi-label precision ``tp / (tp + fp)`` (fastai's ``PrecisionMulti``; sklearn's ``precision_score``)."""

    name = "precision"

    def score(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _div(tp, tp + fp)


class RecallMulti(_MultiMetric):
    """Multi-label recall ``tp / (tp + fn)`` (fastai's ``RecallMulti``; sklearn's ``recall_score``)."""

    name = "recall"

    def score(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _div(tp, tp + fn)


class F1ScoreMulti(_MultiMetric):
    """Multi-label F1 ``2 tp / (2 tp + fp + fn)`` (fastai's ``F1ScoreMulti``; sklearn's ``f1_score``)."""

    name = "f1_score"

    def score(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _div(2 * tp, 2 * tp + fp + fn)


def metric_name(m: object) -> str:
    """The column name of a metric (a ``functools.partial`` is named after the function it wraps)."""
    while isinstance(m, functools.partial):
        m = m.func
    return getattr(m, "name", None) or getattr(m, "__name__", None) or type(m).__name__
