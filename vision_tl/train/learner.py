"""``TrainingLearner``: a model, its data, an optimizer over parameter groups, and the training recipes.

The fit loop, its events and its override points (``train_step``, ``eval_step``) are the base
class ``Loop`` (``loop.py``); everything optional (progress, recording, gathering validation
predictions, mixed precision, early stopping, checkpoints, distributed) is a callback that reacts to
the named events listed in ``callbacks.py``. ``learn.model`` may be wrapped (DDP,
``torch.compile``) by a callback; ``learn.raw_model`` is always the plain module that is saved and
exported. ``lr_find`` is in ``lr_find.py``.

Inputs are normalized from the learner's ``Preprocess`` spec (``learn.preprocess``), decided once and
applied where the float batch is made (``batches``: in the DataLoader workers on the CPU, on the device
otherwise), by the same step prediction uses. Parameter groups, the optimizer and
freezing are in ``optimizer.py``; save/load and resumable checkpoints in ``checkpoint.py``; the
``vision_learner`` factory in ``vision_learner.py``. Prediction and export are not here: the inference layer's
``Learner`` (``vision_tl.Learner``, the one users make) subclasses this one and adds them, so this
class is named for what it alone does: train.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.batch_size import few_steps_message
from ..data.batch_tfms import has_normalize
from ..data.tfmd_dl import TfmdDL, default_device, inorder_dl
from ..metrics import metric_name
from ..models.build import ModelConfig
from ..models.param_groups import check_groups, default_splitter
from ..models.predict_step import activate, prepare_batch
from ..models.preprocess import Preprocess
from . import checkpoint, optimizer, schedule
from .callbacks import Callback, ChannelsLast, MixedPrecision, TerminateOnNaNCallback
from .loop import Loop, TrainingOOMError, one_or_many
from .losses import default_loss_func
from .lr_find import lr_find as run_lr_find
from .lr_find import valley
from .optimizer import adamw
from .precision import resolve_amp_dtype
from .progress import ProgressCallback
from .recorder import Recorder

__all__ = ["TrainingLearner", "TrainingOOMError", "adamw", "default_device"]


class TrainingLearner(Loop):
    """Train ``model`` on ``dls``; see ``vision_learner`` for the usual way to make one.

    ``preprocess`` (a ``Preprocess``) says how inputs are normalized and outputs activated; by
    default it is read from ``dls`` (a ``Normalize`` in its ``batch_tfms``, else no normalization).
    ``progress``: live bars or plain lines (``False``: no bars; ``"silent"``: nothing), see ``progress.py``.
    """

    def __init__(
        self, dls: Any, model: nn.Module, loss_func: Callable | None = None, opt_func: Callable = adamw,
        lr: float | slice = 1e-3, splitter: Callable = default_splitter, cbs: Iterable[Callback] | None = None,
        metrics: Sequence[Callable] | Callable | None = None, path: str | Path | None = None,
        model_dir: str | Path = "models", wd: float | None = None, train_bn: bool = True,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95), model_config: ModelConfig | None = None,
        device: torch.device | str | None = None, lr_mults: Sequence[float] | None = None, amp: bool | None = None,
        preprocess: Preprocess | None = None, progress: bool | str | None = None,
    ) -> None:
        _check_classes(dls)
        super().__init__()
        self.device = torch.device(device) if device is not None else default_device()
        if hasattr(dls, "to"):
            dls.to(self.device)
        self.dls, self.model = dls, model.to(self.device)
        self.loss_func = loss_func if loss_func is not None else default_loss_func(dls)
        self.opt_func, self.lr, self.wd, self.train_bn, self.moms = opt_func, lr, 0.01 if wd is None else wd, train_bn, moms
        self.metrics = metrics
        self.path = Path(path if path is not None else getattr(dls, "path", None) or ".")
        self.model_dir, self.model_config = Path(model_dir), model_config
        self.preprocess = preprocess if preprocess is not None else Preprocess.from_dls(dls)
        self.param_groups = check_groups(self.raw_model, splitter(self.raw_model))
        self.lr_mults = list(lr_mults) if lr_mults is not None else [1.0] * self.n_groups
        if len(self.lr_mults) != self.n_groups:
            raise ValueError(f"lr_mults has {len(self.lr_mults)} values for {self.n_groups} parameter groups")
        self._norm_ids = optimizer.norm_param_ids(self.raw_model)
        self.frozen_to = 0
        self.recipe: dict[str, Any] = {}  # the last training recipe called and its arguments (trackers, card)
        self.add_cbs([TerminateOnNaNCallback(), Recorder(), ProgressCallback(progress=progress)])
        if amp or (amp is None and self.device.type == "cuda"):
            self.add_cbs([ChannelsLast(), MixedPrecision(torch.bfloat16 if _bf16_ok(self.device) else torch.float16)])
        self.add_cbs(cbs)

    @property
    def metrics(self) -> list[Callable]:
        """The metrics computed on the validation set; assign one metric or a list (``learn.metrics = accuracy``)."""
        return self._metric_fns

    @metrics.setter
    def metrics(self, metrics: Sequence[Callable] | Callable | None) -> None:
        ms = one_or_many(metrics)
        bad = [m for m in ms if not callable(m)]
        if bad:
            raise TypeError(f"metrics must be functions (or a list of them), got {bad[0]!r}")
        self._metric_fns = ms

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing spec: this learner's normalization and activation with ``dls``'s validation
        transforms (what ``export`` saves and prediction uses)."""
        return self._preprocess.with_dls(self.dls)

    @preprocess.setter
    def preprocess(self, spec: Preprocess) -> None:
        if not isinstance(spec, Preprocess):
            raise TypeError(f"preprocess must be a Preprocess, got {type(spec).__name__}")
        self._preprocess = spec

    @property
    def preprocess_stats(self) -> tuple:
        """``(mean, std, activation)``: what of the spec does not come from ``dls`` (a cheap cache key)."""
        spec = self._preprocess
        return spec.mean, spec.std, spec.activation

    # ----- model, groups, optimizer ----------------------------------------------------------
    @property
    def dls(self) -> Any:
        """The DataLoaders; assign new ones (another size or batch size: progressive resizing) at any time."""
        return self._dls

    @dls.setter
    def dls(self, dls: Any) -> None:
        if hasattr(dls, "to") and hasattr(self, "device"):
            dls.to(self.device)  # new DataLoaders follow the learner to its device
        self._dls = dls

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
        self.opt = optimizer.create_opt(self.opt_func, self.param_groups, self._lrs(self.lr), self.wd)
        return self.opt

    def _lrs(self, lr: Any) -> list[float]:
        return [v * m for v, m in zip(schedule.expand_lr(lr, self.n_groups), self.lr_mults)]

    def group_lrs(self) -> list[float]:
        """The learning rate each parameter group has right now (the last one applied)."""
        return optimizer.group_lrs(self.opt, self.n_groups)

    def group_mom(self) -> float | None:
        return optimizer.group_mom(self.opt)

    def set_hypers(self, lrs: list[float], mom: float | None, wd: float | None) -> None:
        """Set each optimizer group's LR (per parameter group), momentum and weight decay."""
        optimizer.set_hypers(self.opt, lrs, mom, wd)

    def batches(self, dl: Any) -> Iterator[Sequence[torch.Tensor]]:
        """``dl``'s batches normalized from the preprocessing spec (by the step prediction uses too); a
        user's own ``Normalize`` in the DataLoaders' batch transforms stays theirs alone."""
        normalize = not has_normalize(getattr(dl, "batch_tfms", None))
        if isinstance(dl, TfmdDL):  # normalized where the batch becomes float: workers on CPU, else the device
            yield from dl.batches(normalize=self._preprocess.normalizer if normalize else None)
            return
        for b in dl:  # any other loader
            yield (prepare_batch(b[0], self._preprocess, normalize=normalize), *b[1:])

    def freeze_to(self, n: int) -> None:
        """Freeze parameter groups ``[:n]`` (negative ``n`` counts from the end).

        With ``train_bn=True`` the normalization layers of frozen groups still train (fastai).
        """
        self.frozen_to = optimizer.freeze_to(self.param_groups, n, self.train_bn, self._norm_ids)

    def freeze(self) -> None:
        """Train only the last group (the head), and normalization layers when ``train_bn``."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    # ----- training recipes --------------------------------------------------------------------
    def _begin(self, resume: str | Path | None) -> None:
        self.resume_state = checkpoint.read_checkpoint(self, resume) if resume is not None else None
        self._warn_few_steps()

    def _warn_few_steps(self) -> None:
        """Say so when an epoch is a handful of optimizer steps (fastai's bs=64 on 72 images is one)."""
        train = getattr(self.dls, "train", None)
        try:
            n_steps, n_train, bs = len(train), len(train.dataset), train.bs
        except (TypeError, AttributeError):  # a DataLoader without a length or a batch size
            return
        message = few_steps_message(n_steps, n_train, bs)
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=4)

    def fit(self, n_epoch: int, lr: Any = None, wd: float | None = None, cbs: Any = None,
            resume: str | Path | None = None) -> None:
        """Train ``n_epoch`` epochs at a constant ``lr`` (float, ``slice(hi)``, ``slice(lo, hi)``, list)."""
        lrs = self._lrs(self.lr if lr is None else lr)
        self.recipe = {"name": "fit", "epochs": n_epoch, "lr": _plain(self.lr if lr is None else lr), "wd": wd}
        self._begin(resume)
        self._fit(n_epoch, lambda pct: (lrs, None), cbs, wd)

    def fit_one_cycle(self, n_epoch: int, lr_max: Any = None, div: float = 25.0, div_final: float = 1e5,
                      pct_start: float = 0.25, wd: float | None = None, moms: tuple[float, float, float] | None = None,
                      cbs: Any = None, resume: str | Path | None = None) -> None:
        """Train with the one-cycle policy, LR and momentum updated every batch."""
        self.recipe = {"name": "fit_one_cycle", "epochs": n_epoch, "lr_max": _plain(self.lr if lr_max is None else lr_max),
                       "div": div, "div_final": div_final, "pct_start": pct_start, "wd": wd}
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
        On a model of one parameter group (a plain ``Learner(dls, model)``) ``freeze`` freezes nothing,
        as in fastai: both phases train the whole model.
        """
        self.recipe = {"name": "fine_tune", "epochs": epochs, "freeze_epochs": freeze_epochs, "base_lr": base_lr,
                       "lr_mult": lr_mult, "pct_start": pct_start, "div": div, "div_final": div_final, "wd": wd}
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
                show_plot: bool = True, suggest_funcs: Any = (valley,)) -> tuple:
        """Train briefly with an exponentially growing LR, restore the model, suggest LRs (fastai's call).

        Returns ``SuggestedLRs``, a named tuple with one field per function of ``suggest_funcs``
        (``valley`` by default; ``minimum``, ``steep``, ``slide`` or your own); the curve is in
        ``learn.recorder.lr_find_lrs`` / ``lr_find_losses`` and plotted when ``show_plot``.
        """
        return run_lr_find(self, start_lr, end_lr, num_it, stop_div, show_plot, suggest_funcs)

    # ----- evaluation --------------------------------------------------------------------------
    def validate(self, dl: Any = None) -> list[float]:
        """``[valid_loss, *metrics]`` over the whole of ``dl`` (default: the validation set)."""
        self._run_validation(self.dls.valid if dl is None else dl)
        return list(self.val_results or [])

    def get_preds(self, ds_idx: int = 1, dl: Any = None, with_loss: bool = False, with_input: bool = False,
                  act: Callable | None = None) -> tuple:
        """Predictions over a whole DataLoader: ``(probs, targets[, losses][, inputs])``.

        ``act`` defaults to the loss's ``activation`` (sigmoid for ``BCEWithLogitsLossFlat``), else softmax;
        multi-label ``targets`` are one-hot floats ``(N, C)``; ``targets`` is None for an unlabelled ``test_dl``. ``ds_idx=0``
        predicts the training set in dataset order, every item, with the valid-time transforms (the
        training loader itself shuffles, drops a last partial batch and augments).
        """
        if dl is None:
            if ds_idx not in (0, 1):
                raise ValueError(f"ds_idx must be 0 (train) or 1 (valid), got {ds_idx!r}")
            dl = inorder_dl(self.dls.train) if ds_idx == 0 else self.dls.valid
        gathered = self.gather_preds
        gathered.with_input = with_input
        try:
            self._run_validation(dl)
        finally:
            gathered.with_input = False
        if gathered.preds is None:
            raise ValueError(f"get_preds: the DataLoader yielded no batches ({dl!r})")
        preds, targs = gathered.preds, gathered.targs
        act = act or getattr(self.loss_func, "activation", None) or partial(activate, activation=self._preprocess.activation)
        out: list[Any] = [act(preds), targs]
        if with_loss and targs is None:
            raise ValueError("get_preds(with_loss=True) needs labels; this DataLoader yields images only")
        if with_loss:
            out.append(self._per_item_loss(preds, targs))
        if with_input:
            out.append(gathered.inputs)
        return tuple(out)

    def _per_item_loss(self, preds: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
        old = getattr(self.loss_func, "reduction", None)
        if old is None:
            return torch.stack([self.loss_func(p[None], t[None]) for p, t in zip(preds, targs)])
        self.loss_func.reduction = "none"
        try:
            losses = self.loss_func(preds, targs)
            return losses.flatten(1).mean(1) if losses.ndim > 1 else losses  # multi-label: mean over classes
        finally:
            self.loss_func.reduction = old

    # ----- precision ---------------------------------------------------------------------------
    def to_fp16(self, force: bool = False) -> TrainingLearner:
        """Mixed precision with float16 autocast and a gradient scaler, where the device runs it fast.

        A CPU without fast half precision warns once and trains in float32 (with AMX-BF16 only, in
        bfloat16); ``force=True`` autocasts to float16 anyway (see ``vision_tl.train.precision``).
        """
        dtype = resolve_amp_dtype(self.device, torch.float16, force)
        self.to_fp32()
        return self if dtype is None else self.add_cb(MixedPrecision(dtype))

    def to_bf16(self, force: bool = False) -> TrainingLearner:
        """Mixed precision with bfloat16 autocast (no scaler needed), where the device runs it fast
        (``force=True``: anyway)."""
        dtype = resolve_amp_dtype(self.device, torch.bfloat16, force)
        self.to_fp32()
        return self if dtype is None else self.add_cb(MixedPrecision(dtype))

    def to_fp32(self) -> TrainingLearner:
        self.scaler = None
        return self.remove_cb(MixedPrecision)

    # ----- files (implemented in checkpoint.py) -------------------------------------------------
    def save(self, name: str | Path, with_opt: bool = True) -> Path:
        """Save model (and optimizer) state to ``path/model_dir/name.pth``; returns the file."""
        return checkpoint.save_weights(self, name, with_opt)

    def load(self, name: str | Path, with_opt: bool = True, strict: bool = True) -> TrainingLearner:
        """Load what ``save`` wrote (safely: ``weights_only=True``)."""
        checkpoint.load_weights(self, name, with_opt, strict)
        return self

    def save_checkpoint(self, name: str | Path) -> Path:
        """Everything needed to resume after this epoch: model, optimizer, scaler, epoch, RNGs, history."""
        return checkpoint.save_checkpoint(self, name)

    def distrib_ctx(self, **kwargs: Any) -> Any:
        """``with learn.distrib_ctx():`` trains data-parallel (DDP) when launched by torchrun; else a no-op.

        Keyword arguments (``sync_bn``, ``find_unused_parameters``, ...): see
        ``vision_tl.train.distributed_callback.distrib_ctx``.
        """
        from .distributed_callback import distrib_ctx

        return distrib_ctx(self, **kwargs)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={type(self.raw_model).__name__}, groups={self.n_groups}, device={self.device}, "
                f"metrics={[metric_name(m) for m in self.metrics]}, cbs={[type(c).__name__ for c in self.cbs]})")


def _plain(lr: Any) -> Any:
    """An LR argument as JSON-able data (a slice becomes ``[start, stop]``)."""
    if isinstance(lr, slice):
        return [lr.start, lr.stop]
    return [float(v) for v in lr] if isinstance(lr, (list, tuple)) else lr


def _bf16_ok(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def _check_classes(dls: Any) -> None:
    """Refuse single-label data of one class (it may be shown, as the book's presizing demo does, not trained)."""
    if getattr(dls, "target_kind", None) == "category" and len(getattr(dls, "vocab", None) or [None, None]) < 2:
        raise ValueError(f"only one class {list(dls.vocab)!r} in these DataLoaders: a classifier needs at least two "
                         "(showing their batches is fine; training on them is not)")
