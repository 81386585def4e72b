"""``GatherPreds``: collects what the evaluation step produced over a validation pass.

Every Learner has one (``learn.gather_preds``). During a pass without gradients (``validate``,
``get_preds``, the validation part of each epoch) it keeps each batch's ``learn.pred`` and, for
labelled data, ``learn.yb[0]`` (int class indices or float ``(N, C)`` multi-label targets alike) and
the batch loss; at ``before_metrics`` it joins them into ``preds``, ``targs`` and ``loss`` (the
mean over items), from which the Learner computes its metrics and ``get_preds`` its results.
Under torchrun, ``DistributedTrainer`` swaps it for a subclass whose ``combine`` gathers every
rank's share back into dataset order.
"""

from __future__ import annotations

import torch

from .callbacks import Callback

__all__ = ["GatherPreds"]


class GatherPreds(Callback):
    """Keeps the predictions, targets, loss (and inputs when ``with_input``) of a validation pass.

    After the pass: ``preds`` (float, what the model returned), ``targs`` (None for unlabelled
    data), ``loss`` (float mean over items, None unlabelled), ``inputs`` (when ``with_input``).
    """

    order = -30  # reset before any callback can cancel the pass (stale results would look like new ones)

    def __init__(self) -> None:
        self.with_input = False
        self._reset()

    @property
    def name(self) -> str:
        return "gather_preds"  # subclasses (the distributed one) take the same place on the Learner

    def _reset(self) -> None:
        self._preds: list[torch.Tensor] = []
        self._targs: list[torch.Tensor] = []
        self._inputs: list[torch.Tensor] = []
        self._loss_sum = 0.0
        self.preds: torch.Tensor | None = None
        self.targs: torch.Tensor | None = None
        self.inputs: torch.Tensor | None = None
        self.loss: float | None = None

    def before_validate(self) -> None:
        self._reset()

    def after_batch(self) -> None:
        learn = self.learn
        if learn.training or learn.pred is None:  # None: the batch was cancelled before its prediction
            return
        if learn.yb:
            if learn.loss is None:
                return
            self._targs.append(learn.yb[0])
            self._loss_sum = self._loss_sum + learn.loss.detach().float() * len(learn.yb[0])
        self._preds.append(learn.pred.detach().float())
        if self.with_input:
            self._inputs.append(learn.xb[0].cpu())

    def before_metrics(self) -> None:
        self.preds, self.targs, self.inputs, self.loss = self.combine()

    def combine(self) -> tuple:
        """``(preds, targs, inputs, loss)`` of the whole pass from the per-batch pieces (None where empty)."""
        preds = torch.cat(self._preds) if self._preds else None
        targs = torch.cat(self._targs) if self._targs else None
        inputs = torch.cat(self._inputs) if self._inputs else None
        loss = float(self._loss_sum) / len(targs) if targs is not None and len(targs) else None
        return preds, targs, inputs, loss
