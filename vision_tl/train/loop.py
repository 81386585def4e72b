"""The fit loop the Learner runs, with its events and its named override points.

``Loop`` is the part of ``TrainingLearner`` that trains: the callbacks and their events, the
fit → epoch → batch loop, and the two steps a subclass may override, as Keras's ``train_step``:

- ``train_step()``: one optimisation step on ``self.xb`` / ``self.yb`` (forward, loss, backward,
  optimizer step), firing the batch events so that callbacks keep working;
- ``eval_step()``: the forward pass (and loss, for labelled data) of a pass without gradients.

A replacement sets at least ``self.pred`` and ``self.loss`` (the Recorder, the progress bar and
``GatherPreds`` read them); ``self.backward()`` and ``self.step()`` do the gradient-scaler-aware
parts. Everything optional (progress, recording, gathering, mixed precision, early stopping,
checkpoints, distributed) is a callback. The model, data, optimizer and recipes are the Learner's
(``learner.py``): it sets ``model``, ``dls``, ``loss_func``, ``opt``, ``scaler``, ``metrics`` and
``device``, and fills in the override points declared here (``create_opt``, ``set_hypers``,
``batches``). ``Loop.__init__`` sets the loop's own state (callbacks, counters, ``gather_preds``,
``resume_state``); what the subclass must provide is declared on the class (``model``, ``dls``,
``loss_func``, ``metrics``, ``device``), so everything the loop reads is named here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from . import checkpoint
from .callbacks import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelTrainException,
    CancelValidException,
)
from .gather import GatherPreds
from .progress import user_call_site, warnings_through_bar

__all__ = ["Loop", "Schedule", "TrainingOOMError"]

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
Schedule = Callable[[float], tuple[list[float], "float | None"]]  # pct of training -> (LR per group, momentum)



def one_or_many(x: Any) -> list:
    """``None`` -> ``[]``; a list or tuple -> a list; anything else (one callback, one metric, a
    ``partial``) -> a one-element list: fastai takes ``cbs=MixUp()`` and ``metrics=accuracy`` alike."""
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]

class TrainingOOMError(RuntimeError):
    """The device ran out of memory during training; the message suggests a smaller batch size."""


class Loop:
    """Callbacks, events and the fit loop; the base of ``TrainingLearner`` (see the module docstring)."""

    # what the subclass provides (``TrainingLearner`` sets them before any fit): the loop's contract
    model: torch.nn.Module
    dls: Any  # ``.train`` and ``.valid`` loaders
    loss_func: Callable[..., torch.Tensor]
    metrics: list[Callable]
    device: torch.device
    # the loop's own state (``__init__``)
    cbs: list[Callback]
    gather_preds: GatherPreds  # what the validation pass produced (a callback: DDP swaps in its own)
    pred: Any = None  # the model's output for the current batch (None until the step sets it)
    loss: Any = None  # the current batch's loss, detached (what is logged)
    opt: torch.optim.Optimizer | None = None
    scaler: Any = None

    def __init__(self) -> None:
        """The loop's own state: no callbacks but ``GatherPreds``, counters at zero, nothing to resume."""
        self.cbs = []
        self.fitting = self.training = False
        self.epoch, self.n_epoch, self.iter, self.start_epoch, self.fit_index = 0, 1, 0, 0, 0
        self.epochs_done = 0  # over every fit of this learner: the data's shuffle/augmentation stream
        self.nan_at: tuple[int, int] | None = None  # (epoch, batch) where TerminateOnNaN stopped the last fit
        self.val_results: list[float] | None = None
        self.resume_state: dict | None = None  # a checkpoint to restore when the next fit starts
        self.add_cb(GatherPreds())

    # ----- callbacks -------------------------------------------------------------------------
    def add_cb(self, cb: Callback | type) -> Any:
        """Add a callback (instance or class); it becomes ``learn.<cb.name>``."""
        cb = cb() if isinstance(cb, type) else cb
        cb.learn = self
        self.cbs = sorted([*self.cbs, cb], key=lambda c: c.order)
        if not hasattr(self, cb.name) or isinstance(getattr(self, cb.name), Callback):
            setattr(self, cb.name, cb)
        return self

    def add_cbs(self, cbs: Iterable[Callback] | Callback | type | None) -> Any:
        """Add callbacks: a list of them, or one callback (instance or class) as fastai accepts."""
        for cb in one_or_many(cbs):
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback | type) -> Any:
        """Remove a callback instance, or every callback of a class."""
        gone = [c for c in self.cbs if (c is cb if isinstance(cb, Callback) else isinstance(c, cb))]
        self.cbs = [c for c in self.cbs if c not in gone]
        for c in gone:
            if getattr(self, c.name, None) is c:
                delattr(self, c.name)
        return self

    @contextmanager
    def added_cbs(self, cbs: Iterable[Callback] | Callback | None) -> Iterator[None]:
        """Callbacks for the duration of one call (``fit(..., cbs=...)``)."""
        cbs = [cb() if isinstance(cb, type) else cb for cb in one_or_many(cbs)]
        self.add_cbs(cbs)
        try:
            yield
        finally:
            for cb in cbs:
                self.remove_cb(cb)

    def __call__(self, event: str) -> None:
        for cb in self.cbs:
            cb(event)

    def _with_events(self, f: Callable[[], None], name: str, ex: type[Exception]) -> None:
        try:
            self(f"before_{name}")
            f()
        except ex:
            self(f"after_cancel_{name}")
        self(f"after_{name}")

    # ----- the loop ----------------------------------------------------------------------------
    def fit_schedule(self, n_epoch: int, sched: Schedule, wd: float | None = None, cbs: Any = None) -> None:
        """Train ``n_epoch`` epochs with the LRs (one per parameter group) and momentum ``sched(pct)``
        gives before each batch, ``pct`` being the progress through this fit in [0, 1).

        The general form of ``fit`` and ``fit_one_cycle``; ``lr_find`` and custom schedules use it.
        """
        self._fit(n_epoch, sched, cbs, wd)

    def _fit(self, n_epoch: int, sched: Schedule, cbs: Any = None, wd: float | None = None, fit_index: int = 0) -> None:
        if not isinstance(n_epoch, int) or n_epoch < 0:
            raise ValueError(f"n_epoch must be an int >= 0, got {n_epoch!r}")
        state = self.resume_state
        if state is not None and fit_index < state["fit_index"]:
            return  # this part of the recipe finished before the interruption
        with self.added_cbs(cbs), warnings_through_bar(user_call_site()):
            if self.opt is None:
                self.create_opt()
            self.n_epoch, self.start_epoch, self.fit_index, self.nan_at = n_epoch, 0, fit_index, None
            self._sched, self._wd, self.fitting = sched, wd, True
            try:
                self._with_events(self._do_fit, "fit", CancelFitException)
            except _OOM as e:
                bs = getattr(self.dls, "bs", "?")
                raise TrainingOOMError(
                    f"out of memory on {self.device} with batch size bs={bs}: make the DataLoaders with a "
                    f"smaller bs (e.g. bs={bs // 2 if isinstance(bs, int) else 16}), a smaller image size, or call "
                    "learn.to_fp16()"
                ) from e
            finally:
                self.fitting = False

    def _do_fit(self) -> None:
        if self.resume_state is not None:
            checkpoint.restore_checkpoint(self, self.resume_state)
            self.resume_state = None
        for epoch in range(self.start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _do_epoch(self) -> None:
        self.dl, self.training = self.dls.train, True
        if hasattr(self.dl, "set_epoch"):
            # a run-wide count, so fine_tune's frozen and unfrozen phases see different orders
            self.dl.set_epoch(self.epochs_done)
        self.epochs_done += 1
        self.model.train()
        self._with_events(self._train_batches, "train", CancelTrainException)
        self._run_validation(self.dls.valid)

    def _train_batches(self) -> None:
        self.n_iter = len(self.dl)
        for i, b in enumerate(self.batches(self.dl)):
            self.iter = i
            self.pct_train = (self.epoch + self.iter / self.n_iter) / self.n_epoch
            self.set_hypers(*self._sched(self.pct_train), self._wd)
            self._batch(b)

    def _batch(self, b: Sequence[torch.Tensor]) -> None:
        self.xb, self.yb = (b[0],), tuple(b[1:])
        self._with_events(self._do_batch, "batch", CancelBatchException)

    def _do_batch(self) -> None:
        self.pred = self.loss = None
        if self.training:
            self.train_step()
        else:
            self.eval_step()

    # ----- the override points -------------------------------------------------------------------
    def create_opt(self) -> torch.optim.Optimizer:
        """Make ``self.opt`` (called when a fit starts without one); the Learner builds its groups here."""
        raise NotImplementedError(f"{type(self).__name__} must define create_opt()")

    def set_hypers(self, lrs: list[float], mom: float | None, wd: float | None) -> None:
        """Apply the schedule's LR per parameter group, momentum and weight decay before a batch."""
        raise NotImplementedError(f"{type(self).__name__} must define set_hypers()")

    def batches(self, dl: Any) -> Iterator[Sequence[torch.Tensor]]:
        """``(x, *targets)`` batches of ``dl`` as the model takes them; the Learner normalizes here."""
        return iter(dl)

    def train_step(self) -> None:
        """One optimisation step on ``self.xb`` / ``self.yb``; override it for a custom step.

        Sets ``self.pred``, ``self.loss_grad`` (what is back-propagated) and ``self.loss`` (detached,
        logged), and fires ``after_pred``, ``after_loss``, ``before_backward``, ``after_backward``,
        ``before_step`` and ``after_step`` for the callbacks (mixed precision, gradient accumulation
        and clipping, the NaN check).
        """
        self.pred = self.model(*self.xb)
        self("after_pred")
        self.loss_grad = self.loss_func(self.pred, *self.yb)
        self.loss = self.loss_grad.detach()
        self("after_loss")
        self("before_backward")
        self.backward()
        self("after_backward")
        self("before_step")
        self.step()
        self("after_step")
        self.opt.zero_grad(set_to_none=True)

    def eval_step(self) -> None:
        """The forward pass of a pass without gradients (and the loss when the batch has labels).

        Sets ``self.pred`` (and ``self.loss``), firing ``after_pred`` (and ``after_loss``);
        ``GatherPreds`` collects them after the batch.
        """
        self.pred = self.model(*self.xb)
        self("after_pred")
        if self.yb:  # an unlabelled test_dl: predictions only
            self.loss_grad = self.loss_func(self.pred, *self.yb)
            self.loss = self.loss_grad.detach()
            self("after_loss")

    def backward(self) -> None:
        """Back-propagate ``self.loss_grad`` (through the fp16 gradient scaler when there is one)."""
        (self.scaler.scale(self.loss_grad) if self.scaler is not None else self.loss_grad).backward()

    def step(self) -> None:
        """One optimizer step (through the fp16 gradient scaler when there is one)."""
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()

    # ----- validation ----------------------------------------------------------------------------
    def _run_validation(self, dl: Any) -> None:
        """One pass over ``dl`` without gradients: ``learn.gather_preds`` collects it, ``val_results`` follow."""
        self.dl, self.training = dl, False
        self.model.eval()

        def run() -> None:
            with torch.no_grad():
                for i, b in enumerate(self.batches(dl)):
                    self.iter = i
                    self._batch(b)
            self("before_metrics")  # GatherPreds joins (under torchrun: gathers) the batches here
            self.val_results = self._metrics()

        self._with_events(run, "validate", CancelValidException)

    def _metrics(self) -> list[float] | None:
        g = self.gather_preds
        if g.targs is None:
            return None
        return [g.loss, *[float(m(g.preds, g.targs)) for m in self.metrics]]
