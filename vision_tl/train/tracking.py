"""Callbacks that watch the epoch results and act on them: stop early, keep the best model, log, checkpoint.

``EarlyStoppingCallback`` and ``SaveModelCallback`` track one recorded column (``valid_loss``,
``accuracy``, ...); ``CSVLogger`` appends each epoch's row to a file; ``CheckpointCallback`` saves
the full resumable state (see ``checkpoint.py``). Under torchrun files are written by rank 0 only.
"""

from __future__ import annotations

import csv
import operator
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .callbacks import Callback, CancelFitException
from .distributed import is_main_process

if TYPE_CHECKING:
    from .learner import TrainingLearner

__all__ = ["CSVLogger", "CheckpointCallback", "EarlyStoppingCallback", "SaveModelCallback"]


def _monitor_index(learn: TrainingLearner, monitor: str) -> int:
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
