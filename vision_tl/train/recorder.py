"""The Recorder: the history of a fit (per-batch losses and LRs, one row of values per epoch) and its plots."""

from __future__ import annotations

import time
from typing import Any

from ..metrics import metric_name
from .callbacks import Callback, is_trial_fit
from .schedule import debias, ema_step

__all__ = ["Recorder"]


class Recorder(Callback):
    """Records per-batch training losses, LRs and momentums, and one row of values per epoch.

    ``learn.recorder.values`` is a list of ``[train_loss, valid_loss, *metrics, *extra]`` per epoch,
    ``metric_names`` their column names; ``lrs`` holds per-batch lists (one LR per group). A callback
    adds ``extra`` columns by defining ``recorded_columns() -> list[str]`` (asked at ``before_fit``) and
    ``recorded_values() -> list[float]`` (asked after each epoch), as ``EMACallback`` does for the
    live weights' results. ``fits`` keeps one entry per finished fit (recipe, phase, columns, rows):
    the whole history of the model, which the model card records.
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
        self.fits: list[dict] = []

    def before_fit(self) -> None:
        self.lrs, self.moms, self.losses, self.values, self.iters = [], [], [], [], []
        self._extra = [c for c in self.learn.cbs if hasattr(c, "recorded_columns")]
        extra = [n for c in self._extra for n in c.recorded_columns()]
        self.metric_names = ["epoch", "train_loss", "valid_loss", *[metric_name(m) for m in self.learn.metrics],
                             *extra, "time"]
        self._avg, self._count = 0.0, 0

    @property
    def smooth_loss(self) -> float:
        return debias(self._avg, self._count, self.beta)

    def before_epoch(self) -> None:
        self._start = time.perf_counter()

    def state_dict(self) -> dict:
        """The history a resumed run continues from (plain lists and floats)."""
        return {"values": self.values, "losses": self.losses, "lrs": self.lrs, "iters": self.iters,
                "avg": self._avg, "count": self._count, "fits": self.fits}

    def load_state_dict(self, d: dict) -> None:
        self.values, self.losses, self.lrs, self.iters = d["values"], d["losses"], d["lrs"], d["iters"]
        self._avg, self._count = d["avg"], d["count"]
        self.fits = list(d.get("fits", []))

    def after_batch(self) -> None:
        if not self.learn.training or self.learn.loss is None:  # None: the batch was cancelled before its loss
            return
        loss = float(self.learn.loss)
        self._avg, self._count, _ = ema_step(self._avg, self._count, loss, self.beta)
        self.losses.append(loss)
        self.lrs.append(self.learn.group_lrs())
        self.moms.append(self.learn.group_mom())

    def after_epoch(self) -> None:
        vals = list(self.learn.val_results or [float("nan")] * (1 + len(self.learn.metrics)))
        extra = [float(v) for c in self._extra for v in c.recorded_values()]
        self.values.append([self.smooth_loss, *vals, *extra])
        self.iters.append(len(self.losses))
        self.epoch_time = time.perf_counter() - self._start

    def after_fit(self) -> None:
        if not self.values or is_trial_fit(self.learn):
            return
        recipe = dict(getattr(self.learn, "recipe", None) or {})
        self.fits.append({"recipe": recipe.get("name"), "phase": self.learn.fit_index,
                          "frozen": self.learn.frozen_to > 0, "columns": self.metric_names[1:-1],
                          "rows": [[float(v) for v in row] for row in self.values]})

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
