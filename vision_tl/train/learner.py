"""The Learner: a model, its data, an optimizer over parameter groups, and the fit loop.

The loop (``_do_fit`` → ``_do_epoch`` → ``_do_batch``) is short on purpose; everything optional
(progress, recording, mixed precision, early stopping, checkpoints, distributed) is a callback
that reacts to the named events listed in ``callbacks.py``. ``learn.model`` may be wrapped
(DDP, ``torch.compile``) by a callback; ``learn.raw_model`` is always the plain module that is
saved and exported.

Parameter groups, the optimizer and freezing are in ``param_groups.py``; save/load and resumable
checkpoints in ``checkpoint.py``; the ``vision_learner`` factory in ``vision.py`` (re-exported
here); prediction and export in ``vision_tl.inference`` (imported when first used).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.tfmd_dl import default_device
from ..metrics import metric_name
from ..models.build import ModelConfig
from ..models.split import check_groups, default_splitter
from . import checkpoint, param_groups, schedule
from .callbacks import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelTrainException,
    CancelValidException,
    ChannelsLast,
    MixedPrecision,
    ProgressCallback,
    Recorder,
    TerminateOnNaNCallback,
)
from .param_groups import adamw
from .vision import cnn_learner, vision_learner

__all__ = ["Learner", "TrainingOOMError", "adamw", "cnn_learner", "default_device", "vision_learner"]

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class TrainingOOMError(RuntimeError):
    """The device ran out of memory during training; the message suggests a smaller batch size."""


class Learner:
    """Train ``model`` on ``dls``; see ``vision_learner`` for the usual way to make one."""

    def __init__(
        self, dls: Any, model: nn.Module, loss_func: Callable | None = None, opt_func: Callable = adamw,
        lr: float | slice = 1e-3, splitter: Callable = default_splitter, cbs: Iterable[Callback] | None = None,
        metrics: Sequence[Callable] | Callable | None = None, path: str | Path | None = None,
        model_dir: str | Path = "models", wd: float | None = None, train_bn: bool = True,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95), model_config: ModelConfig | None = None,
        device: torch.device | str | None = None, lr_mults: Sequence[float] | None = None, amp: bool | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        if hasattr(dls, "to"):
            dls.to(self.device)
        self.dls, self.model = dls, model.to(self.device)
        self.loss_func = loss_func if loss_func is not None else nn.CrossEntropyLoss()
        self.opt_func, self.lr, self.wd, self.train_bn, self.moms = opt_func, lr, 0.01 if wd is None else wd, train_bn, moms
        self.metrics = [] if metrics is None else list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
        self.path = Path(path if path is not None else getattr(dls, "path", None) or ".")
        self.model_dir, self.model_config = Path(model_dir), model_config
        self.param_groups = check_groups(self.raw_model, splitter(self.raw_model))
        self.lr_mults = list(lr_mults) if lr_mults is not None else [1.0] * self.n_groups
        if len(self.lr_mults) != self.n_groups:
            raise ValueError(f"lr_mults has {len(self.lr_mults)} values for {self.n_groups} parameter groups")
        self._norm_ids = param_groups.norm_param_ids(self.raw_model)
        self.opt: torch.optim.Optimizer | None = None
        self.scaler: Any = None
        self.frozen_to, self.fitting, self.training, self.fit_index = 0, False, False, 0
        self.nan_at: tuple[int, int] | None = None  # (epoch, batch) where TerminateOnNaN stopped the last fit
        self.epoch, self.n_epoch, self.iter, self.start_epoch = 0, 1, 0, 0
        self.epochs_done = 0  # over every fit of this learner: the data's shuffle/augmentation stream
        self.val_results: list[float] | None = None
        self._resume: dict | None = None
        self.cbs: list[Callback] = []
        self.add_cbs([TerminateOnNaNCallback(), Recorder(), ProgressCallback()])
        if amp or (amp is None and self.device.type == "cuda"):
            self.add_cbs([ChannelsLast(), MixedPrecision(torch.bfloat16 if _bf16_ok(self.device) else torch.float16)])
        self.add_cbs(cbs or [])

    # ----- callbacks -------------------------------------------------------------------------
    def add_cb(self, cb: Callback | type) -> Learner:
        """Add a callback (instance or class); it becomes ``learn.<cb.name>``."""
        cb = cb() if isinstance(cb, type) else cb
        cb.learn = self
        self.cbs = sorted([*self.cbs, cb], key=lambda c: c.order)
        if not hasattr(self, cb.name) or isinstance(getattr(self, cb.name), Callback):
            setattr(self, cb.name, cb)
        return self

    def add_cbs(self, cbs: Iterable[Callback]) -> Learner:
        for cb in cbs:
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback | type) -> Learner:
        """Remove a callback instance, or every callback of a class."""
        gone = [c for c in self.cbs if (c is cb if isinstance(cb, Callback) else isinstance(c, cb))]
        self.cbs = [c for c in self.cbs if c not in gone]
        for c in gone:
            if getattr(self, c.name, None) is c:
                delattr(self, c.name)
        return self

    @contextmanager
    def added_cbs(self, cbs: Iterable[Callback] | Callback | None):
        """Callbacks for the duration of one call (``fit(..., cbs=...)``)."""
        cbs = [cbs] if isinstance(cbs, Callback) else list(cbs or [])
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

    # ----- model, groups, optimizer ----------------------------------------------------------
    @property
    def raw_model(self) -> nn.Module:
        """The plain model under any DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrapper."""
        m = self.model
        while True:
            inner = getattr(m, "module", None) or getattr(m, "_orig_mod", None)
            if not isinstance(inner, nn.Module):
                return m
            m = inner

    @property
    def n_groups(self) -> int:
        return len(self.param_groups)

    def create_opt(self) -> torch.optim.Optimizer:
        """One or two optimizer groups per parameter group: weight decay only on tensors with ndim >= 2."""
        self.opt = param_groups.create_opt(self.opt_func, self.param_groups, self._lrs(self.lr), self.wd)
        return self.opt

    def _lrs(self, lr: Any) -> list[float]:
        return [v * m for v, m in zip(schedule.expand_lr(lr, self.n_groups), self.lr_mults)]

    def group_lrs(self) -> list[float]:
        """The learning rate each parameter group has right now (the last one applied)."""
        return param_groups.group_lrs(self.opt, self.n_groups)

    def group_mom(self) -> float | None:
        return param_groups.group_mom(self.opt)

    def _set_hypers(self, lrs: list[float], mom: float | None, wd: float | None) -> None:
        param_groups.set_hypers(self.opt, lrs, mom, wd)

    def freeze_to(self, n: int) -> None:
        """Freeze parameter groups ``[:n]`` (negative ``n`` counts from the end).

        With ``train_bn=True`` the normalization layers of frozen groups still train (fastai).
        """
        self.frozen_to = param_groups.freeze_to(self.param_groups, n, self.train_bn, self._norm_ids)

    def freeze(self) -> None:
        """Train only the last group (the head), and normalization layers when ``train_bn``."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    # ----- the loop ----------------------------------------------------------------------------
    def _fit(self, n_epoch: int, sched: Callable[[float], tuple[list[float], float | None]], cbs: Any = None,
             wd: float | None = None, fit_index: int = 0) -> None:
        if not isinstance(n_epoch, int) or n_epoch < 0:
            raise ValueError(f"n_epoch must be an int >= 0, got {n_epoch!r}")
        state = self._resume
        if state is not None and fit_index < state["fit_index"]:
            return  # this part of the recipe finished before the interruption
        with self.added_cbs(cbs):
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
        if self._resume is not None:
            checkpoint.restore_checkpoint(self, self._resume)
            self._resume = None
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
        for i, b in enumerate(self.dl):
            self.iter = i
            self.pct_train = (self.epoch + self.iter / self.n_iter) / self.n_epoch
            self._set_hypers(*self._sched(self.pct_train), self._wd)
            self._batch(b)

    def _batch(self, b: Sequence[torch.Tensor]) -> None:
        self.xb, self.yb = tuple(b[:1]), tuple(b[1:])
        self._with_events(self._do_batch, "batch", CancelBatchException)

    def _do_batch(self) -> None:
        self.pred = self.model(*self.xb)
        self("after_pred")
        if not self.yb:  # an unlabelled test_dl: predictions only
            if not self.training:
                self.val_preds.append(self.pred.detach().float())
            return
        self.loss_grad = self.loss_func(self.pred, *self.yb)
        self.loss = self.loss_grad.detach()
        self("after_loss")
        if not self.training:
            self.val_preds.append(self.pred.detach().float())
            self.val_targs.append(self.yb[0])
            self._val_loss_sum += self.loss.float() * len(self.yb[0])
            return
        self("before_backward")
        (self.scaler.scale(self.loss_grad) if self.scaler is not None else self.loss_grad).backward()
        self("after_backward")
        self("before_step")
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self("after_step")
        self.opt.zero_grad(set_to_none=True)

    def _run_validation(self, dl: Any) -> None:
        """One pass over ``dl`` without gradients: fills ``val_preds``/``val_targs`` and ``val_results``."""
        self.dl, self.training = dl, False
        self.model.eval()
        self.val_preds, self.val_targs, self.val_inputs = [], [], []
        self._val_loss_sum = torch.zeros((), device=self.device)

        def run() -> None:
            with torch.no_grad():
                for i, b in enumerate(dl):
                    self.iter = i
                    if self._keep_inputs:
                        self.val_inputs.append(b[0].cpu())
                    self._batch(b)
            self("before_metrics")  # a distributed callback gathers val_preds/val_targs here
            self.val_results = self._metrics()

        self._with_events(run, "validate", CancelValidException)

    _keep_inputs = False

    def _metrics(self) -> list[float] | None:
        if not self.val_targs:
            return None
        preds, targs = torch.cat(self.val_preds), torch.cat(self.val_targs)
        loss = float(self._val_loss_sum) / max(1, len(targs))
        return [loss, *[float(m(preds, targs)) for m in self.metrics]]

    # ----- training recipes --------------------------------------------------------------------
    def _begin(self, resume: str | Path | None) -> None:
        self._resume = checkpoint.read_checkpoint(self, resume) if resume is not None else None

    def fit(self, n_epoch: int, lr: Any = None, wd: float | None = None, cbs: Any = None,
            resume: str | Path | None = None) -> None:
        """Train ``n_epoch`` epochs at a constant ``lr`` (float, ``slice(hi)``, ``slice(lo, hi)``, list)."""
        lrs = self._lrs(self.lr if lr is None else lr)
        self._begin(resume)
        self._fit(n_epoch, lambda pct: (lrs, None), cbs, wd)

    def fit_one_cycle(self, n_epoch: int, lr_max: Any = None, div: float = 25.0, div_final: float = 1e5,
                      pct_start: float = 0.25, wd: float | None = None, moms: tuple[float, float, float] | None = None,
                      cbs: Any = None, resume: str | Path | None = None) -> None:
        """Train with the one-cycle policy, LR and momentum updated every batch."""
        self._begin(resume)
        self._one_cycle(n_epoch, lr_max, div, div_final, pct_start, wd, moms, cbs, fit_index=0)

    def _one_cycle(self, n_epoch: int, lr_max: Any, div: float, div_final: float, pct_start: float,
                   wd: float | None, moms: Any, cbs: Any, fit_index: int) -> None:
        if not 0 < pct_start <= 1:
            raise ValueError(f"pct_start must be in (0, 1], got {pct_start!r}")
        lrs, moms = self._lrs(self.lr if lr_max is None else lr_max), moms or self.moms

        def sched(pct: float) -> tuple[list[float], float]:
            return ([schedule.one_cycle_lr(pct, lr, div, div_final, pct_start) for lr in lrs],
                    schedule.one_cycle_mom(pct, moms, pct_start))

        self._fit(n_epoch, sched, cbs, wd, fit_index)

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, div_final: float = 1e5, wd: float | None = None,
                  moms: tuple[float, float, float] | None = None, cbs: Any = None,
                  resume: str | Path | None = None) -> None:
        """fastai's recipe: train the head frozen, then everything with discriminative LRs.

        ``freeze``; one-cycle ``freeze_epochs`` at ``slice(base_lr)`` with ``pct_start=0.99``; then
        ``base_lr /= 2``; ``unfreeze``; one-cycle ``epochs`` at ``slice(base_lr/lr_mult, base_lr)``.
        """
        self._begin(resume)
        self.freeze()
        self._one_cycle(freeze_epochs, slice(base_lr), 25.0, div_final, 0.99, wd, moms, cbs, fit_index=0)
        if self.nan_at is not None:  # TerminateOnNaN stopped the frozen phase: unfreezing would not help
            warnings.warn("fine_tune: the frozen phase stopped on a non-finite loss, so the unfrozen phase "
                          "was not run", RuntimeWarning, stacklevel=2)
            return
        base_lr /= 2
        self.unfreeze()
        self._one_cycle(epochs, slice(base_lr / lr_mult, base_lr), div, div_final, pct_start, wd, moms, cbs,
                        fit_index=1)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
                show_plot: bool = True) -> schedule.SuggestedLRs:
        """Train briefly with an exponentially growing LR, restore the model, suggest LRs.

        Returns ``SuggestedLRs(valley, minimum, steep)``; the curve is in ``learn.recorder.lr_find_lrs``
        / ``lr_find_losses`` and plotted when ``show_plot``.
        """
        return schedule.run_lr_find(self, start_lr, end_lr, num_it, stop_div, show_plot)

    # ----- evaluation --------------------------------------------------------------------------
    def validate(self, dl: Any = None) -> list[float]:
        """``[valid_loss, *metrics]`` over the whole of ``dl`` (default: the validation set)."""
        self._run_validation(self.dls.valid if dl is None else dl)
        return list(self.val_results or [])

    def get_preds(self, ds_idx: int = 1, dl: Any = None, with_loss: bool = False, with_input: bool = False,
                  act: Callable | None = None) -> tuple:
        """Predictions over a whole DataLoader: ``(probs, targets[, losses][, inputs])``.

        ``act`` defaults to softmax; ``targets`` is None for an unlabelled ``test_dl``. ``ds_idx=0``
        predicts the training set in dataset order, every item, with the valid-time transforms (the
        training loader itself shuffles, drops a last partial batch and augments).
        """
        if dl is None:
            if ds_idx not in (0, 1):
                raise ValueError(f"ds_idx must be 0 (train) or 1 (valid), got {ds_idx!r}")
            from ..inference.predict import inorder_dl

            dl = inorder_dl(self.dls.train) if ds_idx == 0 else self.dls.valid
        self._keep_inputs = with_input
        try:
            self._run_validation(dl)
        finally:
            self._keep_inputs = False
        if not self.val_preds:
            raise ValueError(f"get_preds: the DataLoader yielded no batches ({dl!r})")
        preds = torch.cat(self.val_preds)
        targs = torch.cat(self.val_targs) if self.val_targs else None
        out: list[Any] = [(act or partial(torch.softmax, dim=-1))(preds), targs]
        if with_loss and targs is None:
            raise ValueError("get_preds(with_loss=True) needs labels; this DataLoader yields images only")
        if with_loss:
            out.append(self._per_item_loss(preds, targs))
        if with_input:
            out.append(torch.cat(self.val_inputs))
        return tuple(out)

    def _per_item_loss(self, preds: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
        old = getattr(self.loss_func, "reduction", None)
        if old is None:
            return torch.stack([self.loss_func(p[None], t[None]) for p, t in zip(preds, targs)])
        self.loss_func.reduction = "none"
        try:
            return self.loss_func(preds, targs)
        finally:
            self.loss_func.reduction = old

    # ----- precision ---------------------------------------------------------------------------
    def to_fp16(self) -> Learner:
        """Mixed precision with float16 autocast and a gradient scaler."""
        return self.to_fp32().add_cb(MixedPrecision(torch.float16))

    def to_bf16(self) -> Learner:
        """Mixed precision with bfloat16 autocast (no scaler needed)."""
        return self.to_fp32().add_cb(MixedPrecision(torch.bfloat16))

    def to_fp32(self) -> Learner:
        self.scaler = None
        return self.remove_cb(MixedPrecision)

    # ----- files (implemented in checkpoint.py) -------------------------------------------------
    def save(self, name: str | Path, with_opt: bool = True) -> Path:
        """Save model (and optimizer) state to ``path/model_dir/name.pth``; returns the file."""
        return checkpoint.save_weights(self, name, with_opt)

    def load(self, name: str | Path, with_opt: bool = True, strict: bool = True) -> Learner:
        """Load what ``save`` wrote (safely: ``weights_only=True``)."""
        checkpoint.load_weights(self, name, with_opt, strict)
        return self

    def save_checkpoint(self, name: str | Path) -> Path:
        """Everything needed to resume after this epoch: model, optimizer, scaler, epoch, RNGs, history."""
        return checkpoint.save_checkpoint(self, name)

    # ----- inference (implemented in vision_tl.inference) ---------------------------------------
    def predict(self, item: Any) -> tuple:
        """``(label, index, probs)`` for one image (path, bytes, PIL image or array)."""
        return self._predictor().predict(item)

    def predict_batch(self, items: Sequence[Any], **kwargs: Any) -> Any:
        """Class probabilities ``(n, c)`` for many images, decoded in worker processes (see ``Predictor``)."""
        return self._predictor().predict_batch(items, **kwargs)

    def top_k(self, item: Any, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely ``(label, probability)`` pairs for one image, most likely first."""
        return self._predictor().top_k(item, k)

    def _predictor(self) -> Any:
        """The ``Predictor`` of this learner, rebuilt only when what it was built from changed."""
        from ..inference.predict import Predictor

        model = self.raw_model
        param = next(model.parameters(), None)
        dls = self.dls
        key = (model, None if param is None else (param.device, param.dtype), dls, tuple(dls.vocab),
               tuple(repr(t) for t in dls.item_tfms), tuple((id(t), repr(t)) for t in dls.batch_tfms),
               self.model_config)
        cached = getattr(self, "_predictor_cache", None)
        if cached is None or cached[0] != key:  # the model and dls compare by identity
            self._predictor_cache = (key, Predictor.from_learner(self))
        return self._predictor_cache[1]

    def grad_cam(self, item: Any, target: int | str | None = None, layer: nn.Module | None = None) -> Any:
        """The Grad-CAM heatmap ``(H, W)`` in ``[0, 1]`` for one image (``vision_tl.inference.cam``)."""
        return self._predictor().grad_cam(item, target, layer)

    def show_cam(self, item: Any, target: int | str | None = None, layer: nn.Module | None = None,
                 **kwargs: Any) -> Any:
        """Draw one image with its Grad-CAM heatmap on top; returns the matplotlib axes."""
        return self._predictor().show_cam(item, target, layer, **kwargs)

    def tta(self, **kwargs: Any) -> Any:
        from ..inference.predict import tta

        return tta(self, **kwargs)

    def show_results(self, **kwargs: Any) -> Any:
        from ..inference.interpret import show_results

        return show_results(self, **kwargs)

    def export(self, fname: str | Path = "export.vtl") -> Path:
        """Write the ``.vtl`` file (under torchrun: rank 0 writes, the other ranks wait and get None)."""
        from ..inference.export import export_learner
        from .distributed import rank0_only

        return rank0_only(export_learner)(self, fname)

    def export_onnx(self, fname: str | Path, **kwargs: Any) -> Path:
        from ..inference.onnx import export_onnx
        from .distributed import rank0_only

        return rank0_only(export_onnx)(self, fname, **kwargs)

    def distrib_ctx(self, **kwargs: Any) -> Any:
        """``with learn.distrib_ctx():`` trains data-parallel (DDP) when launched by torchrun; else a no-op.

        Keyword arguments (``sync_bn``, ``find_unused_parameters``, ...): see
        ``vision_tl.train.distributed.distrib_ctx``.
        """
        from .distributed import distrib_ctx

        return distrib_ctx(self, **kwargs)

    def __repr__(self) -> str:
        return (f"Learner(model={type(self.raw_model).__name__}, groups={self.n_groups}, device={self.device}, "
                f"metrics={[metric_name(m) for m in self.metrics]}, cbs={[type(c).__name__ for c in self.cbs]})")


def _bf16_ok(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()
