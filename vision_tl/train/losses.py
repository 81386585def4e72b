"""Loss functions with fastai's names and behaviour: flattened losses that know their activation.

Each loss carries ``activation(out)`` (logits -> probabilities) and ``decodes(probs)`` (probabilities ->
predictions), which ``Learner.get_preds``, ``predict`` and export read, so a multi-label model gets
sigmoid probabilities and a threshold without being told twice. ``reduction`` is a plain attribute:
``Learner.get_preds(with_loss=True)`` sets it to ``"none"`` for per-item losses.

``CrossEntropyLossFlat`` with the defaults gives exactly ``nn.CrossEntropyLoss`` on ``(N, C)`` logits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.dataloaders import register_default_loss

__all__ = ["BCEWithLogitsLossFlat", "CrossEntropyLossFlat", "LabelSmoothingCrossEntropy", "MSELossFlat",
           "default_loss_func"]


def _class_last(x: Tensor, axis: int) -> Tensor:
    """``x`` with its class axis moved to the end (a no-op for the usual ``(N, C)`` output)."""
    return x if axis in (-1, x.ndim - 1) else x.transpose(axis, -1).contiguous()


class CrossEntropyLossFlat(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` over the class ``axis`` of any-shaped outputs, flattened to ``(-1, C)``.

    ``activation`` is softmax over the classes, ``decodes`` the arg-max (fastai's ``CrossEntropyLossFlat``).
    Other arguments (``weight``, ``ignore_index``, ``reduction``, ``label_smoothing``) go to PyTorch's loss.
    """

    def __init__(self, *args: Any, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.axis = axis

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        inp = _class_last(inp, self.axis)
        return super().forward(inp.reshape(-1, inp.shape[-1]), targ.reshape(-1).long())

    def activation(self, out: Tensor) -> Tensor:
        return torch.softmax(out, dim=self.axis)

    def decodes(self, probs: Tensor) -> Tensor:
        return probs.argmax(dim=self.axis)


class BCEWithLogitsLossFlat(nn.BCEWithLogitsLoss):
    """Binary cross-entropy on logits for multi-label targets (one-hot floats ``(N, C)``).

    ``activation`` is the sigmoid; ``decodes`` thresholds at ``thresh`` (a bool mask per class), as in
    fastai's ``BCEWithLogitsLossFlat(thresh=0.5)``. Targets are made float. With ``reduction="none"``
    the loss keeps the output's shape (fastai flattens it); ``Learner.get_preds`` averages per item.
    """

    def __init__(self, *args: Any, axis: int = -1, thresh: float = 0.5, **kwargs: Any) -> None:
        if not 0 < thresh < 1:
            raise ValueError(f"thresh must be in (0, 1), got {thresh!r}")
        super().__init__(*args, **kwargs)
        self.axis, self.thresh = axis, float(thresh)

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        if inp.shape != targ.shape:
            raise ValueError(f"BCEWithLogitsLossFlat: outputs {tuple(inp.shape)} and targets {tuple(targ.shape)} "
                             "differ; multi-label targets are one-hot floats (N, C)")
        inp, targ = _class_last(inp, self.axis), _class_last(targ, self.axis)
        pw = self.pos_weight
        if pw is not None and pw.device != inp.device:  # the Learner moves the model, not the loss
            self.pos_weight = pw.to(inp.device)
        return super().forward(inp, targ.to(inp.dtype if inp.is_floating_point() else torch.float32))

    def activation(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out)

    def decodes(self, probs: Tensor) -> Tensor:
        return probs > self.thresh

    def extra_repr(self) -> str:
        return f"thresh={self.thresh}"


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against smoothed targets (fastai's formula)::

        loss = (1 - eps) * nll(log_softmax(x), y) + eps * mean_over_classes(-log_softmax(x))

    i.e. the true class gets ``1 - eps + eps/C`` of the target mass and every class ``eps/C``. Item losses
    are reduced by ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``); ``weight`` weights the nll term.
    """

    def __init__(self, eps: float = 0.1, weight: Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__()
        if not 0 <= eps < 1:
            raise ValueError(f"eps must be in [0, 1), got {eps!r}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.eps, self.weight, self.reduction = float(eps), weight, reduction

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        c = output.shape[-1]
        log_preds = F.log_softmax(output.reshape(-1, c), dim=-1)
        target = target.reshape(-1).long()
        smooth = -log_preds.sum(dim=-1)
        smooth = smooth.sum() if self.reduction == "sum" else smooth.mean() if self.reduction == "mean" else smooth
        weight = None if self.weight is None else self.weight.to(log_preds.device)
        nll = F.nll_loss(log_preds, target, weight=weight, reduction=self.reduction)
        return smooth * self.eps / c + (1 - self.eps) * nll

    def activation(self, out: Tensor) -> Tensor:
        return torch.softmax(out, dim=-1)

    def decodes(self, probs: Tensor) -> Tensor:
        return probs.argmax(dim=-1)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"


class MSELossFlat(nn.MSELoss):
    """Mean squared error between outputs and float targets of the same number of elements per item
    (fastai's ``MSELossFlat``, the loss of a ``RegressionBlock``); the outputs are the predictions."""

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        return super().forward(inp.reshape(len(inp), -1), targ.float().reshape(len(targ), -1))

    def activation(self, out: Tensor) -> Tensor:
        return out

    def decodes(self, preds: Tensor) -> Tensor:
        return preds


def default_loss_func(dls: Any) -> nn.Module:
    """The loss fastai picks from the data: ``BCEWithLogitsLossFlat`` for multi-label sets,
    ``MSELossFlat`` for regression targets, else ``CrossEntropyLossFlat``."""
    if getattr(dls, "multi_label", False):
        return BCEWithLogitsLossFlat()
    if getattr(dls, "target_kind", None) == "regression":
        return MSELossFlat()
    return CrossEntropyLossFlat()


register_default_loss(default_loss_func)  # dls.loss_func (vision_tl.data.dataloaders) answers with it
