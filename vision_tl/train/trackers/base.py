"""What every tracker logs, and when; a tracker subclass only says how its client writes it.

- at the first ``before_fit``: the run's hyper-parameters (``run_params``: architecture, recipe with
  its LRs and schedule, epochs, batch size, image size, transforms, seed, optimizer, loss), and at
  each fit the phase (frozen or not, epochs);
- every ``log_every`` training batches: ``train/loss`` (the batch's), ``train/smooth_loss`` and
  ``train/lr_<group>``, at the global step (batches since the run started, over every fit);
- after every epoch: ``epoch/<column>`` for each of the Recorder's columns (``train_loss``,
  ``valid_loss``, the metrics, EMA's ``raw_*``), at the epoch number counted over every fit;
- after every fit: the confusion matrix (single-label classification) and a grid of validation
  predictions, as figures;
- after ``learn.export``: the ``.vtl`` file, when the client stores files.

Under torchrun only rank 0 starts a run and talks to the client; the other ranks do nothing, and no
tracker ever takes part in a collective, so a slow or failing client cannot hang the others.
A fit stays in the same run as the fits before it (``fine_tune``'s two phases are one run);
``finish()`` ends the run (the CLI calls it after export; in a notebook call it when done).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from ..callbacks import Callback, is_trial_fit
from ..distributed import is_main_process

__all__ = ["MissingTrackerError", "TrackerBase", "import_client", "run_params"]


class MissingTrackerError(ImportError):
    """A tracker's client library is not installed; the message says what to install."""


def import_client(module: str, extra: str) -> Any:
    """``importlib.import_module(module)``, or a ``MissingTrackerError`` naming the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingTrackerError(
            f"the {extra} tracker needs the '{module.split('.')[0]}' package, which is not installed ({e}): "
            f"pip install 'vision_tl[{extra}]'") from None


def describe_tfm(t: Any) -> str:
    """A transform as text: its repr, or (for the default ``object`` repr, which holds an address) its class
    and simple attributes, so that the same pipeline always gives the same text."""
    text = repr(t)
    if " object at 0x" not in text:
        return text
    attrs = {k: v for k, v in sorted(vars(t).items()) if not k.startswith("_") and isinstance(v, (int, float, str, bool))}
    return f"{type(t).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in attrs.items()) + ")"


def _size(learn: Any) -> Any:
    spec = getattr(learn, "preprocess", None)
    size = getattr(spec, "input_size", None)
    return list(size) if size else None


def run_params(learn: Any) -> dict[str, Any]:
    """The hyper-parameters of ``learn``'s training, as flat JSON-able values (what trackers log)."""
    cfg, dls = getattr(learn, "model_config", None), learn.dls
    train = getattr(dls, "train", None)
    recipe = dict(getattr(learn, "recipe", None) or {})
    params: dict[str, Any] = {
        "arch": cfg.arch if cfg is not None else type(learn.raw_model).__name__,
        "pretrained": getattr(cfg, "pretrained", None),
        "n_classes": len(getattr(dls, "vocab", []) or []),
        "recipe": recipe.pop("name", None),
        **{f"recipe.{k}": v for k, v in recipe.items()},
        "lr": learn.lr if not isinstance(learn.lr, slice) else [learn.lr.start, learn.lr.stop],
        "lr_mults": list(learn.lr_mults), "wd": learn.wd, "moms": list(learn.moms),
        "opt": getattr(learn.opt_func, "__name__", type(learn.opt_func).__name__),
        "loss": type(learn.loss_func).__name__,
        "batch_size": getattr(train, "bs", None), "image_size": _size(learn),
        "item_tfms": [describe_tfm(t) for t in getattr(dls, "item_tfms", []) or []],
        "batch_tfms": [describe_tfm(t) for t in getattr(dls, "batch_tfms", []) or []],
        "seed": getattr(train, "seed", None),
        "n_train": len(dls.train_ds) if hasattr(dls, "train_ds") else None,
        "n_valid": len(dls.valid_ds) if hasattr(dls, "valid_ds") else None,
        "n_param_groups": learn.n_groups,
    }
    return {k: v for k, v in params.items() if v is not None}


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class TrackerBase(Callback):
    """The shared logic of the tracker callbacks (see the module docstring); subclasses implement ``_open``,
    ``_params``, ``_metrics``, ``_figure``, ``_file`` and ``_close``.

    Args:
        log_every: log the training loss and LRs every ``log_every`` batches (1: every batch).
        n_preds: how many validation images the predictions grid shows after each fit (0: none).
        log_model: log the exported ``.vtl`` file (trackers that store files).
    """

    order = 57  # after the Recorder (50), the monitors (55) and the CSV log (56) wrote this epoch
    extra = ""  # the pip extra that installs the client

    def __init__(self, log_every: int = 1, n_preds: int = 16, log_model: bool = True) -> None:
        if not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"log_every must be an int >= 1, got {log_every!r}")
        self.log_every, self.n_preds, self.log_model = log_every, n_preds, log_model
        self.started, self.step, self.epochs_logged, self.fits_logged = False, 0, 0, 0
        self._active = False

    # ----- what a subclass implements -----------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _params(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def _metrics(self, values: dict[str, float], step: int, kind: str) -> None:
        """``kind`` is ``"step"`` (``step`` counts batches) or ``"epoch"`` (``step`` counts epochs)."""
        raise NotImplementedError

    def _figure(self, name: str, fig: Any, step: int) -> None:
        raise NotImplementedError

    def _file(self, path: Path) -> None:
        """Store ``path`` with the run (trackers without file storage record its path instead)."""

    def _flush(self) -> None:
        """Make what was logged so far visible to readers."""

    def _close(self) -> None:
        raise NotImplementedError

    # ----- events -------------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._active = is_main_process() and not is_trial_fit(self.learn)
        if not self._active:
            return
        if not self.started:
            self._open()
            self.started = True
            self._params(run_params(self.learn))
        learn = self.learn
        self._params({f"fit{self.fits_logged}.epochs": learn.n_epoch,
                      f"fit{self.fits_logged}.frozen_to": learn.frozen_to})

    def after_batch(self) -> None:
        learn = self.learn
        if not (self._active and learn.training) or learn.loss is None:
            return
        self.step += 1
        if self.step % self.log_every:
            return
        values = {"train/loss": float(learn.loss), "train/smooth_loss": float(learn.recorder.smooth_loss)}
        values.update({f"train/lr_{i}": float(lr) for i, lr in enumerate(learn.group_lrs())})
        self._metrics({k: v for k, v in values.items() if _finite(v) is not None}, self.step, "step")

    def epoch_values(self) -> dict[str, float]:
        """The last epoch's Recorder columns as ``{"epoch/<name>": value}`` (non-finite values left out)."""
        rec = self.learn.recorder
        out = {f"epoch/{n}": _finite(v) for n, v in zip(rec.metric_names[1:-1], rec.values[-1])}
        return {k: v for k, v in out.items() if v is not None}

    def after_epoch(self) -> None:
        if not self._active or not self.learn.recorder.values:
            return
        self._metrics(self.epoch_values(), self.epochs_logged, "epoch")
        self.epochs_logged += 1
        self._flush()

    def after_fit(self) -> None:
        if not self._active:
            return
        self.fits_logged += 1
        from .figures import confusion_figure, predictions_figure

        step = max(self.epochs_logged - 1, 0)
        fig = confusion_figure(self.learn)
        if fig is not None:
            self._figure("confusion_matrix", fig, step)
        fig = predictions_figure(self.learn, self.n_preds) if self.n_preds else None
        if fig is not None:
            self._figure("predictions", fig, step)
        self._flush()

    def after_export(self) -> None:
        """Called by ``learn.export`` with ``learn.export_path`` set (None on ranks other than 0)."""
        path = getattr(self.learn, "export_path", None)
        if self.started and self.log_model and path is not None and is_main_process():
            self._file(Path(path))
            self._flush()

    def finish(self) -> None:
        """End the run (flush and close the client). A later fit starts a new run."""
        if self.started:
            self._close()
        self.started, self.step, self.epochs_logged, self.fits_logged = False, 0, 0, 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
