"""The callback base class, the loop's events, and the callbacks that change how a batch is trained.

A callback is a class with methods named after the Learner's events; each sees the Learner as
``self.learn`` and reads or sets its public loop state (``learn.epoch``, ``learn.iter``, ``learn.xb``,
``learn.yb``, ``learn.pred``, ``learn.loss``, ...). Events, in order::

    before_fit
      before_epoch
        before_train   (before_batch after_pred after_loss before_backward after_backward
                        before_step after_step after_batch) * n_batches   after_train
        before_validate  (before_batch after_pred after_loss after_batch) * n   before_metrics
        after_validate
      after_epoch
    after_fit

The events inside a batch are fired by ``Learner.train_step`` / ``eval_step``. Raising
``CancelBatchException`` (``Epoch``, ``Train``, ``Valid``, ``Fit``) skips the rest of that stage;
``after_cancel_<stage>`` then ``after_<stage>`` still run. Lower ``order`` runs first.

The other built-in callbacks have their own modules: ``recorder.py`` (history), ``progress.py``
(bars and the epoch table), ``tracking.py`` (early stopping, best model, CSV log, checkpoints),
``gather.py`` (validation predictions).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .learner import TrainingLearner


class CancelBatchException(Exception):
    """Skip the rest of this batch (no step, no zero_grad)."""


class CancelTrainException(Exception):
    """Skip the rest of the training part of this epoch."""


class CancelValidException(Exception):
    """Skip validation this epoch."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch."""


class CancelFitException(Exception):
    """Stop training now (``after_fit`` still runs)."""


class Callback:
    """Subclass and define methods named after events (``before_fit``, ``after_batch``, ...)."""

    order: int = 0
    learn: TrainingLearner

    def __call__(self, event: str) -> None:
        method = getattr(self, event, None)
        if method is not None:
            method()

    @property
    def name(self) -> str:
        """snake_case class name without 'Callback': the attribute under which the Learner exposes it."""
        n = type(self).__name__.removesuffix("Callback") or "callback"
        return "".join("_" + c.lower() if c.isupper() else c for c in n).lstrip("_")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def state_dict(self) -> dict:
        """What a resumed run needs of this callback (plain values; ``{}``: nothing). Checkpoints store it."""
        return {}

    def load_state_dict(self, d: dict) -> None:
        """Take back what ``state_dict`` returned (called when a checkpoint is resumed)."""


def is_trial_fit(learn: TrainingLearner) -> bool:
    """True during a fit whose changes are undone afterwards (``lr_find``'s): one of its callbacks has
    ``trial = True``. Callbacks that accumulate over fits (the history, EMA, trackers) skip such a fit."""
    return any(getattr(c, "trial", False) for c in learn.cbs)


class TerminateOnNaNCallback(Callback):
    """Stop training at the first non-finite training loss, saying at which epoch and batch."""

    order = -5

    def after_loss(self) -> None:
        if self.learn.training and not torch.isfinite(self.learn.loss).all():
            self.learn.nan_at = (self.learn.epoch, self.learn.iter)
            warnings.warn(
                f"training loss is {float(self.learn.loss)} at epoch {self.learn.epoch}, batch {self.learn.iter}: "
                "training stopped (try a lower lr, or check the inputs/labels)", RuntimeWarning, stacklevel=2,
            )
            raise CancelFitException()


class GradientAccumulation(Callback):
    """Step the optimizer once every ``n_acc`` samples: a large effective batch on little memory."""

    order = -2

    def __init__(self, n_acc: int = 32) -> None:
        if n_acc < 1:
            raise ValueError(f"n_acc must be >= 1, got {n_acc!r}")
        self.n_acc = n_acc

    def before_fit(self) -> None:
        self.count = 0

    def after_loss(self) -> None:
        if self.learn.training:
            self.learn.loss_grad = self.learn.loss_grad * (len(self.learn.yb[0]) / self.n_acc)

    def before_step(self) -> None:
        self.count += len(self.learn.yb[0])
        if self.count < self.n_acc:
            raise CancelBatchException()  # keep accumulating: no step, no zero_grad
        self.count = 0


class GradientClip(Callback):
    """Clip the gradient norm to ``max_norm`` before each step (unscaling fp16 gradients first)."""

    order = 5

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        self.max_norm, self.norm_type = max_norm, norm_type

    def before_step(self) -> None:
        if self.learn.scaler is not None:
            self.learn.scaler.unscale_(self.learn.opt)
        torch.nn.utils.clip_grad_norm_(self.learn.raw_model.parameters(), self.max_norm, self.norm_type)


class MixedPrecision(Callback):
    """Autocast the forward pass and loss to ``bf16`` or ``fp16`` (fp16 with a gradient scaler)."""

    order = 10

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"MixedPrecision dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")
        self.dtype, self._ctx = dtype, None

    def before_fit(self) -> None:
        if self.dtype == torch.float16 and self.learn.scaler is None:
            self.learn.scaler = torch.amp.GradScaler(self.learn.device.type)

    def before_batch(self) -> None:
        self._exit()
        self._ctx = torch.autocast(self.learn.device.type, dtype=self.dtype)
        self._ctx.__enter__()

    def _exit(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None

    def after_loss(self) -> None:
        self._exit()
        self.learn.pred = self.learn.pred.float()

    # a Cancel{Train,Valid,Epoch,Fit}Exception raised mid-batch (lr_find's in after_loss) skips
    # after_batch: leave autocast at the end of the stage instead of leaking it into what follows
    after_cancel_batch = after_batch = after_train = after_validate = after_fit = _exit


class ChannelsLast(Callback):
    """Use channels-last memory format for the model and each batch (faster convolutions on CUDA)."""

    order = -10

    def before_fit(self) -> None:
        self.learn.model.to(memory_format=torch.channels_last)

    def before_batch(self) -> None:
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in self.learn.xb)
