"""The callback base class and the built-in callbacks.

A callback is a class with methods named after the Learner's events; each sees the Learner as
``self.learn`` (and reads its state: ``learn.epoch``, ``learn.iter``, ``learn.loss``, ...).
Events, in order::

    before_fit
      before_epoch
        before_train   (before_batch after_pred after_loss before_backward after_backward
                        before_step after_step after_batch) * n_batches   after_train
        before_validate  (before_batch after_pred after_loss after_batch) * n   before_metrics
        after_validate
      after_epoch
    after_fit

Raising ``CancelBatchException`` (``Epoch``, ``Train``, ``Valid``, ``Fit``) skips the rest of
that stage; ``after_cancel_<stage>`` then ``after_<stage>`` still run. Lower ``order`` runs first.
"""

from __future__ import annotations

import csv
import math
import operator
import random
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .distributed import is_main_process
from .schedule import debias, ema_step

if TYPE_CHECKING:
    from .learner import Learner


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
    learn: Learner

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


def _fmt(v: Any) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.6f}" if math.isfinite(v) else str(v)
    return str(v)


class Recorder(Callback):
    """Records per-batch training losses, LRs and momentums, and one row of values per epoch.

    ``learn.recorder.values`` is a list of ``[train_loss, valid_loss, *metrics]`` per epoch,
    ``metric_names`` their column names; ``lrs`` holds per-batch lists (one LR per group).
    """

    order = 50

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = beta
        self.lrs: list[list[float]] = []
        self.moms: list[float | None] = []
        self.losses: list[float] = []
        self.values: list[list[float]] = []
        self.iters: list[int] = []
        self.metric_names: list[str] = []
        self.lr_find_lrs: list[float] = []
        self.lr_find_losses: list[float] = []

    def before_fit(self) -> None:
        from ..metrics import metric_name

        self.lrs, self.moms, self.losses, self.values, self.iters = [], [], [], [], []
        self.metric_names = ["epoch", "train_loss", "valid_loss", *[metric_name(m) for m in self.learn.metrics], "time"]
        self._avg, self._count = 0.0, 0

    @property
    def smooth_loss(self) -> float:
        return debias(self._avg, self._count, self.beta)

    def before_epoch(self) -> None:
        self._start = time.perf_counter()

    def state_dict(self) -> dict:
        """The history a resumed run continues from (plain lists and floats)."""
        return {"values": self.values, "losses": self.losses, "lrs": self.lrs, "iters": self.iters,
                "avg": self._avg, "count": self._count}

    def load_state_dict(self, d: dict) -> None:
        self.values, self.losses, self.lrs, self.iters = d["values"], d["losses"], d["lrs"], d["iters"]
        self._avg, self._count = d["avg"], d["count"]

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        loss = float(self.learn.loss)
        self._avg, self._count, _ = ema_step(self._avg, self._count, loss, self.beta)
        self.losses.append(loss)
        self.lrs.append(self.learn.group_lrs())
        self.moms.append(self.learn.group_mom())

    def after_epoch(self) -> None:
        vals = list(self.learn.val_results or [float("nan")] * (1 + len(self.learn.metrics)))
        self.values.append([self.smooth_loss, *vals])
        self.iters.append(len(self.losses))
        self.epoch_time = time.perf_counter() - self._start

    @property
    def log(self) -> list:
        """The last epoch's row: ``[epoch, train_loss, valid_loss, *metrics, time]``."""
        if not self.values:
            return []
        secs = int(self.epoch_time)
        return [self.learn.epoch, *self.values[-1], f"{secs // 60:02d}:{secs % 60:02d}"]

    def plot_loss(self, skip_start: int = 5, with_valid: bool = True) -> Any:
        """Plot the training loss per batch (and validation loss per epoch); returns the Axes."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        xs = list(range(skip_start, len(self.losses)))
        ax.plot(xs, self.losses[skip_start:], label="train")
        if with_valid and self.values:
            ax.plot(self.iters, [v[1] for v in self.values], label="valid", marker="o")
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax

    def plot_lr_find(self, suggestions: dict[str, float] | None = None) -> Any:
        """Plot the LR finder's smoothed loss against the learning rate (log scale); returns the Axes."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot(self.lr_find_lrs, self.lr_find_losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        for (name, lr), c in zip((suggestions or {}).items(), ("C1", "C2", "C3", "C4")):
            ax.axvline(lr, color=c, linestyle="--", label=f"{name}: {lr:.2e}")
        if suggestions:
            ax.legend()
        return ax


class ProgressCallback(Callback):
    """A tqdm bar per training/validation pass with the live loss, and a printed epoch table."""

    order = 60

    def __init__(self, show_table: bool = True) -> None:
        self.show_table = show_table
        self.bar: Any = None

    def before_fit(self) -> None:
        self._header_done, self._rows, self._handle = False, [], None

    def _open(self, desc: str) -> None:
        import importlib.util

        if _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm
        else:  # tqdm.auto would warn in a notebook without ipywidgets
            from tqdm import tqdm

        self.bar = tqdm(total=len(self.learn.dl), desc=desc, leave=False, dynamic_ncols=True)

    def before_train(self) -> None:
        if self.learn.fitting:
            self._open(f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch}")

    def before_validate(self) -> None:
        if self.learn.fitting:
            self._open("valid")

    def after_batch(self) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if self.learn.training and self.learn.iter % 5 == 0:
            self.bar.set_postfix_str(f"loss {self.learn.recorder.smooth_loss:.4f}", refresh=False)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    after_train = after_validate = after_cancel_train = after_cancel_validate = _close

    def after_fit(self) -> None:
        self._close()

    def after_epoch(self) -> None:
        if not self.show_table:
            return
        from tqdm import tqdm

        names, row = self.learn.recorder.metric_names, self.learn.recorder.log
        widths = [max(len(n), 8) for n in names]
        header = "  ".join(n.ljust(w) for n, w in zip(names, widths))
        line = "  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths))
        self._rows.append(row)
        if _in_notebook():  # one HTML table per fit, updated in place (plain text as the fallback)
            self._show_html(names, header)
            return
        if not self._header_done:
            tqdm.write(header)
            self._header_done = True
        tqdm.write(line)

    def _show_html(self, names: list[str], header: str) -> None:
        from html import escape

        from IPython.display import display

        def tr(cells: list, tag: str) -> str:
            return "<tr>" + "".join(f"<{tag}>{escape(_fmt(c))}</{tag}>" for c in cells) + "</tr>"

        html = "<table><thead>" + tr(names, "th") + "</thead><tbody>" + "".join(tr(r, "td") for r in self._rows)
        widths = [max(len(n), 8) for n in names]
        text = "\n".join([header] + ["  ".join(_fmt(v).ljust(w) for v, w in zip(r, widths)) for r in self._rows])
        bundle = {"text/html": html + "</tbody></table>", "text/plain": text}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where an HTML table renders), without importing IPython otherwise."""
    import sys

    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _monitor_index(learn: Learner, monitor: str) -> int:
    names = learn.recorder.metric_names[1:-1]  # train_loss, valid_loss, metrics
    if monitor not in names:
        raise ValueError(f"monitor={monitor!r} is not recorded; choose one of {names}")
    return names.index(monitor)


class _TrackerCallback(Callback):
    """Tracks the best value of a recorded column (``valid_loss``, ``accuracy``, ...)."""

    order = 55  # after the Recorder wrote this epoch's values

    def __init__(self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0, reset_on_fit: bool = True) -> None:
        lower_better = any(k in monitor for k in ("loss", "error"))
        self.monitor, self.min_delta, self.reset_on_fit = monitor, abs(min_delta), reset_on_fit
        self.comp = comp or (operator.lt if lower_better else operator.gt)
        self.best: float | None = None

    def before_fit(self) -> None:
        self.idx = _monitor_index(self.learn, self.monitor)
        if self.reset_on_fit or self.best is None:
            self.best = None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, d: dict) -> None:
        self.best = d.get("best")

    def _improved(self) -> bool:
        val = float(self.learn.recorder.values[-1][self.idx])
        delta = -self.min_delta if self.comp(0, 1) else self.min_delta
        if self.best is None or self.comp(val - delta, self.best):
            self.best = val
            return True
        return False


class EarlyStoppingCallback(_TrackerCallback):
    """Stop training when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0, patience: int = 1, reset_on_fit: bool = True) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience = patience

    def before_fit(self) -> None:
        super().before_fit()
        self.wait = 0

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wait": self.wait}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.wait = int(d.get("wait", 0))

    def after_epoch(self) -> None:
        if self._improved():
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            if is_main_process():  # every rank stops; one says so
                print(f"No improvement of {self.monitor} since epoch {self.learn.epoch - self.wait}: early stopping")
            raise CancelFitException()


class SaveModelCallback(_TrackerCallback):
    """Save the model whenever ``monitor`` improves (``path/model_dir/fname.pth``); reload the best at the end."""

    def __init__(self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0, fname: str = "model",
                 every_epoch: bool = False, at_end: bool = False, with_opt: bool = False, reset_on_fit: bool = True) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.fname, self.every_epoch, self.at_end, self.with_opt = fname, every_epoch, at_end, with_opt

    def after_epoch(self) -> None:
        if self.every_epoch:
            self.learn.save(f"{self.fname}_{self.learn.epoch}", with_opt=self.with_opt)
        elif self._improved():
            self.learn.save(self.fname, with_opt=self.with_opt)

    def after_fit(self) -> None:
        if self.at_end:
            self.learn.save(self.fname, with_opt=self.with_opt)
        elif not self.every_epoch and self.best is not None:
            self.learn.load(self.fname, with_opt=self.with_opt)


class CSVLogger(Callback):
    """Append each epoch's row to ``path/fname`` (warns before replacing a file it did not write).

    Under torchrun only rank 0 touches the file; the other ranks do nothing.
    """

    order = 56

    def __init__(self, fname: str | Path = "history.csv", append: bool = False) -> None:
        self.fname, self.append, self._started = Path(fname), append, False

    def before_fit(self) -> None:
        if not is_main_process():
            return
        self.path = self.fname if self.fname.is_absolute() else Path(self.learn.path) / self.fname
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.append and not self._started
        if fresh and self.path.exists():
            warnings.warn(f"CSVLogger: replacing existing {str(self.path)!r} (pass append=True to keep it)", stacklevel=2)
        self._write_header = fresh or not self.path.exists()
        if fresh:
            self.path.write_text("")
        self._started = True

    def after_epoch(self) -> None:
        if not is_main_process():
            return
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if self._write_header:
                w.writerow(self.learn.recorder.metric_names)
                self._write_header = False
            w.writerow(self.learn.recorder.log)


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


class CheckpointCallback(Callback):
    """Save the full training state after every ``every`` epochs, so a killed run can resume.

    The file ``path/model_dir/<fname>.pth`` holds model, optimizer, scaler, epoch, RNG states
    and the recorder's values; it is written atomically (a kill during the save leaves the
    previous checkpoint intact). Resume with the same call plus ``resume=fname``.
    """

    order = 90  # after everything that changes state at the end of an epoch

    def __init__(self, fname: str = "checkpoint", every: int = 1) -> None:
        self.fname, self.every = fname, every

    def after_epoch(self) -> None:
        if (self.learn.epoch + 1) % self.every == 0 or self.learn.epoch + 1 == self.learn.n_epoch:
            self.learn.save_checkpoint(self.fname)


def get_rng_states() -> dict:
    """torch (CPU, CUDA), numpy and Python RNG states, in a form ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_states(d: dict) -> None:
    """Restore what ``get_rng_states`` returned."""
    torch.set_rng_state(d["torch"])
    if d["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(d["cuda"])
    keys, pos, has_gauss, gauss = d["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, g = d["python"]
    random.setstate((version, tuple(internal), g))
