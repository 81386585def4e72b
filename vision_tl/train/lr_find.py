"""The learning-rate finder: a short run with an exponentially growing LR, and suggestions from its curve.

``lr_find(learn)`` (``Learner.lr_find``) trains ``num_it`` batches with the LR growing from
``start_lr`` to ``end_lr``, records the smoothed loss, then puts the model, optimizer, scaler,
epoch count and every RNG back, so the next fit is exactly what it would have been without it.
It returns fastai's ``SuggestedLRs``: a named tuple with one field per suggestion function
(``valley`` by default). The suggestion functions take fastai's arguments ``(lrs, losses, num_it)``
and return ``(lr, (lr, loss))``: the suggestion and the point to mark on the plot, so a function
written for fastai works here too.
"""

from __future__ import annotations

import collections
import copy
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any

import numpy as np

from .callbacks import Callback, CancelFitException, CancelValidException
from .rng import get_rng_states, set_rng_states
from .schedule import ema_step, exp_lr

__all__ = ["diverged", "lr_find", "minimum", "slide", "steep", "suggest_lrs", "valley"]

Suggestion = tuple[float, tuple[float, float]]


def _floats(xs: Any) -> list[float]:
    return [float(x) for x in xs]


def valley(lrs: Sequence[float], losses: Sequence[float], num_it: int | None = None) -> Suggestion:
    """fastai's default: the LR about two thirds into the longest run of falling loss (ESRI's rule)."""
    lrs, losses = _floats(lrs), _floats(losses)
    n = len(losses)
    run = [1] * n  # length of the longest decreasing subsequence ending at i
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
            if run[max_end] < run[i]:
                max_end, max_start = i, i - run[i]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return lrs[idx], (lrs[idx], losses[idx])


def slide(lrs: Sequence[float], losses: Sequence[float], num_it: int | None = None, lr_diff: int = 15,
          thresh: float = 0.005, adjust_value: float = 1.0) -> Suggestion:
    """The interval slide rule: from the high-LR end, slide a window of ``lr_diff`` points towards low
    LRs while the loss gradients at its two ends differ by more than ``thresh``; suggest the LR at the
    window's low end (times ``adjust_value``)."""
    lrs, losses = _floats(lrs), _floats(losses)
    grad = np.gradient(np.asarray(losses))
    right = len(losses) - 1
    left = max(0, right - lr_diff)
    pick = left
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        pick, left, right = left, left - 1, right - 1
    lr = lrs[pick] * adjust_value
    return lr, (lr, float(np.interp(np.log10(lr), np.log10(lrs), losses)))


def minimum(lrs: Sequence[float], losses: Sequence[float], num_it: int | None = None) -> Suggestion:
    """One tenth of the LR at the lowest loss (the point marked is the lowest loss itself)."""
    lrs, losses = _floats(lrs), _floats(losses)
    i = min(range(len(losses)), key=losses.__getitem__)
    return lrs[i] / 10, (lrs[i], losses[i])


def steep(lrs: Sequence[float], losses: Sequence[float], num_it: int | None = None) -> Suggestion:
    """The LR where the loss falls fastest (the steepest negative slope against log LR)."""
    lrs, losses = _floats(lrs), _floats(losses)
    if len(lrs) < 2:
        return lrs[0], (lrs[0], losses[0])
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)]
    i = min(range(len(slopes)), key=slopes.__getitem__)
    return lrs[i], (lrs[i], losses[i])


def _func_name(f: Callable) -> str:
    return f.func.__name__ if isinstance(f, partial) else f.__name__


def suggest_lrs(lrs: Sequence[float], losses: Sequence[float], suggest_funcs: Any = (valley,),
                num_it: int | None = None) -> tuple:
    """``SuggestedLRs`` (a named tuple, one field per function) from a finder run's curve.

    As fastai: the first ``num_it // 10`` and the last 5 points are left out (when enough remain)
    and the curve stops at the first NaN; each function gets ``(lrs, losses, num_it)``.
    """
    funcs = list(suggest_funcs) if isinstance(suggest_funcs, (list, tuple)) else [suggest_funcs]
    names = [_func_name(f) for f in funcs]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"suggest_funcs must be one or more functions with different names, got {names}")
    lrs, losses = _floats(lrs), _floats(losses)
    if len(lrs) != len(losses):
        raise ValueError(f"suggest_lrs needs as many lrs as losses, got {len(lrs)} and {len(losses)}")
    num_it = len(lrs) if num_it is None else num_it
    start = num_it // 10
    if len(lrs) - start - 5 >= 3:
        lrs, losses = lrs[start:len(lrs) - 5], losses[start:len(losses) - 5]
    finite = next((i for i, v in enumerate(losses) if math.isnan(v)), len(losses))
    lrs, losses = lrs[:finite], losses[:finite]
    if len(lrs) < 3:
        raise ValueError(f"lr_find recorded {len(lrs)} usable points (the loss diverged at once): lower start_lr")
    return collections.namedtuple("SuggestedLRs", names)(*[float(f(lrs, losses, num_it)[0]) for f in funcs])


_MIN_POINTS_FOR_COLLAPSE = 20  # a short run (num_it=10) is too noisy to call a plateau a collapse
_START_POINTS = 3  # the start level: the highest smoothed loss of the first few batches


def diverged(smoothed: float, best: float, start: float, n_points: int = _MIN_POINTS_FOR_COLLAPSE) -> bool:
    """True once the finder's smoothed loss has clearly diverged: more than 4x its best (fastai's rule), or,
    after falling to under 3/4 of where it started, back up by 80% of that fall (a model that collapses to
    chance plateaus there, under 4x its best, and fastai's rule alone then runs every iteration). The second
    rule waits for ``_MIN_POINTS_FOR_COLLAPSE`` recorded points: a few noisy early losses are no collapse;
    neither rule judges the first ``_START_POINTS`` (a small batch's loss alone can be 4x the one before)."""
    if n_points <= _START_POINTS:
        return False
    if smoothed > 4 * best:
        return True
    return n_points >= _MIN_POINTS_FOR_COLLAPSE and best < 0.75 * start and smoothed - best > 0.8 * (start - best)


class _Finder(Callback):
    """Records (lr, smoothed loss) per training batch; stops at ``num_it`` or when the loss diverges."""

    _START_POINTS = _START_POINTS

    order = -10  # see a diverging loss before TerminateOnNaN does
    trial = True  # its fit is undone afterwards: callbacks that accumulate (EMA, history, trackers) skip it

    def __init__(self, num_it: int, stop_div: bool) -> None:
        self.num_it, self.stop_div = num_it, stop_div

    def before_fit(self) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.best, self.avg, self.n, self.start = math.inf, 0.0, 0, -math.inf

    def before_validate(self) -> None:
        raise CancelValidException()

    def after_loss(self) -> None:
        if not self.learn.training:
            return
        loss = float(self.learn.loss)
        if not math.isfinite(loss):
            raise CancelFitException()
        self.avg, self.n, smoothed = ema_step(self.avg, self.n, loss)
        self.lrs.append(self.learn.group_lrs()[-1])
        self.losses.append(smoothed)
        self.best = min(self.best, smoothed)
        if len(self.losses) <= self._START_POINTS:
            self.start = max(self.start, smoothed)
        if (self.stop_div and diverged(smoothed, self.best, self.start, len(self.losses))) or len(self.lrs) >= self.num_it:
            raise CancelFitException()


def _save_state(learn: Any) -> dict:
    """What the finder's run changes: weights, optimizer, scaler, the run-wide epoch count, every RNG."""
    scaler = learn.scaler
    return {"model": copy.deepcopy(learn.raw_model.state_dict()),
            "opt": copy.deepcopy(learn.opt.state_dict()) if learn.opt is not None else None,
            "scaler": scaler, "scaler_state": copy.deepcopy(scaler.state_dict()) if scaler is not None else None,
            "epochs_done": learn.epochs_done, "rng": get_rng_states()}


def _restore_state(learn: Any, saved: dict) -> None:
    learn.raw_model.load_state_dict(saved["model"])
    if saved["opt"] is None:
        learn.opt = None
    else:
        learn.opt.load_state_dict(saved["opt"])
    learn.scaler = saved["scaler"]
    if saved["scaler_state"]:  # a disabled scaler has no state (and refuses an empty dict)
        learn.scaler.load_state_dict(saved["scaler_state"])
    learn.epochs_done = saved["epochs_done"]
    set_rng_states(saved["rng"])


def lr_find(learn: Any, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True,
            show_plot: bool = True, suggest_funcs: Any = (valley,)) -> tuple:
    """``Learner.lr_find``: exponential LR ramp over ``num_it`` batches, then restore the training state.

    Returns ``SuggestedLRs`` with one field per function in ``suggest_funcs`` (``minimum``,
    ``steep``, ``valley``, ``slide`` or your own). The curve is kept in
    ``learn.recorder.lr_find_lrs`` / ``lr_find_losses`` and plotted when ``show_plot``.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr_find needs 0 < start_lr < end_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if num_it < 3:
        raise ValueError(f"lr_find needs num_it >= 3, got {num_it!r}")
    n_iter = len(learn.dls.train)
    n_epoch = math.ceil(num_it / n_iter)

    def sched(pct: float) -> tuple[list[float], None]:
        i = min(round(pct * n_epoch * n_iter), num_it - 1)
        return [exp_lr(i, num_it, start_lr, end_lr)] * learn.n_groups, None

    finder, saved = _Finder(num_it, stop_div), _save_state(learn)
    progress = getattr(learn, "progress", None)
    try:
        desc = f"lr_find: loss at lr {start_lr:.0e} -> {end_lr:g}" + (", stops if it diverges" if stop_div else "")
        with progress.iteration_bar(num_it, desc) if progress is not None else nullcontext():
            learn.fit_schedule(n_epoch, sched, cbs=[finder])
    finally:
        _restore_state(learn, saved)
    learn.recorder.lr_find_lrs, learn.recorder.lr_find_losses = finder.lrs, finder.losses
    sugg = suggest_lrs(finder.lrs, finder.losses, suggest_funcs, num_it)
    if show_plot:
        learn.recorder.plot_lr_find(sugg._asdict())
    return sugg
