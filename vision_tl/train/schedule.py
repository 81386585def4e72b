"""Learning-rate and momentum schedules as pure functions, and the LR-finder's suggestions.

Everything here is a function of training progress ``pct`` in [0, 1] (or of an iteration
count), so it is easy to test and a resumed run recomputes the same values.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

LR = float | slice | Sequence[float]


def expand_lr(lr: Any, n_groups: int) -> list[float]:
    """One learning rate per parameter group, fastai's way.

    ``float`` → the same for every group; ``slice(hi)`` → ``hi/10`` for the body groups and ``hi``
    for the last (head) group; ``slice(lo, hi)`` → log-spaced from ``lo`` to ``hi``; a list must
    have one value per group.
    """
    if isinstance(lr, slice):
        if lr.step is not None or lr.stop is None:
            raise ValueError(f"lr slice must be slice(hi) or slice(lo, hi), got {lr!r}")
        hi = float(lr.stop)
        if lr.start is None:
            return [hi / 10] * (n_groups - 1) + [hi]
        lo = float(lr.start)
        if lo <= 0 or hi <= 0:
            raise ValueError(f"lr slice bounds must be > 0, got {lr!r}")
        if n_groups == 1:
            return [hi]
        return [lo * (hi / lo) ** (i / (n_groups - 1)) for i in range(n_groups)]
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        if lr <= 0 or math.isnan(lr):
            raise ValueError(f"lr must be > 0, got {lr!r}")
        return [float(lr)] * n_groups
    if isinstance(lr, Sequence) and not isinstance(lr, str):
        if len(lr) != n_groups:
            raise ValueError(f"lr has {len(lr)} values but the model has {n_groups} parameter groups: {list(lr)!r}")
        return [float(x) for x in lr]
    raise ValueError(f"lr must be a float, slice(hi), slice(lo, hi) or {n_groups} floats, got {lr!r}")


def layer_decay_mults(n_groups: int, decay: float) -> list[float]:
    """timm-style layer-wise LR decay: group ``i`` of ``n`` is scaled by ``decay ** (n - 1 - i)``."""
    if not 0 < decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {decay!r}")
    return [decay ** (n_groups - 1 - i) for i in range(n_groups)]


def sched_cos(start: float, end: float, pct: float) -> float:
    """Cosine interpolation from ``start`` (pct=0) to ``end`` (pct=1)."""
    return start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


def combined_cos(pct: float, pct_start: float, start: float, middle: float, end: float) -> float:
    """Cosine ``start → middle`` over the first ``pct_start`` of training, then ``middle → end``."""
    if pct < pct_start:
        return sched_cos(start, middle, pct / pct_start)
    return sched_cos(middle, end, (pct - pct_start) / (1 - pct_start)) if pct_start < 1 else middle


def one_cycle_lr(pct: float, lr_max: float, div: float = 25.0, div_final: float = 1e5, pct_start: float = 0.25) -> float:
    """The one-cycle learning rate at progress ``pct``: warm up to ``lr_max``, anneal to ``lr_max/div_final``."""
    return combined_cos(pct, pct_start, lr_max / div, lr_max, lr_max / div_final)


def one_cycle_mom(pct: float, moms: tuple[float, float, float] = (0.95, 0.85, 0.95), pct_start: float = 0.25) -> float:
    """The one-cycle momentum (Adam's beta1) at ``pct``: down while the LR warms up, back up after."""
    return combined_cos(pct, pct_start, *moms)


def exp_lr(i: int, num_it: int, start_lr: float, end_lr: float) -> float:
    """The LR finder's exponential ramp: ``start_lr`` at step 0 to ``end_lr`` at step ``num_it - 1``."""
    return start_lr * (end_lr / start_lr) ** (i / max(1, num_it - 1))


def ema_step(avg: float, count: int, value: float, beta: float = 0.98) -> tuple[float, int, float]:
    """One step of the debiased exponential moving average: ``(avg, count, smoothed)`` after ``value``.

    The running ``avg``/``count`` start at ``0.0``/``0``; ``smoothed`` is ``avg`` debiased for the
    zero start (the loss curve fastai shows). ``smooth`` and the Recorder both step through this.
    """
    avg, count = beta * avg + (1 - beta) * value, count + 1
    return avg, count, debias(avg, count, beta)


def debias(avg: float, count: int, beta: float = 0.98) -> float:
    """The moving average ``avg`` after ``count`` steps, corrected for its zero start (NaN at 0 steps)."""
    return avg / (1 - beta**count) if count else float("nan")


def smooth(values: Sequence[float], beta: float = 0.98) -> list[float]:
    """Debiased exponential moving average of ``values`` (the loss curve fastai shows)."""
    out, avg, count = [], 0.0, 0
    for v in values:
        avg, count, s = ema_step(avg, count, v, beta)
        out.append(s)
    return out


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's 'valley': the LR about half-way into the longest descending run of the loss curve."""
    n = len(losses)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def minimum(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """One tenth of the LR at the lowest loss."""
    return float(lrs[min(range(len(losses)), key=losses.__getitem__)]) / 10


def steep(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The LR where the loss falls fastest (steepest negative slope against log LR)."""
    if len(lrs) < 2:
        return float(lrs[0])
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)]
    return float(lrs[min(range(len(slopes)), key=slopes.__getitem__)])


def suggest_lrs(lrs: Sequence[float], losses: Sequence[float], skip_start: int = 10, skip_end: int = 5) -> dict[str, float]:
    """``{"valley", "minimum", "steep"}`` from an LR-finder run (smoothed losses, ends trimmed)."""
    if len(lrs) != len(losses) or len(lrs) < 3:
        raise ValueError(f"suggest_lrs needs >= 3 matching lrs and losses, got {len(lrs)} and {len(losses)}")
    if len(lrs) > skip_start + skip_end + 2:
        lrs, losses = lrs[skip_start:len(lrs) - skip_end], losses[skip_start:len(losses) - skip_end]
    return {"valley": valley(lrs, losses), "minimum": minimum(lrs, losses), "steep": steep(lrs, losses)}


class SuggestedLRs(NamedTuple):
    """The LR finder's suggestions (fastai's names)."""

    valley: float
    minimum: float
    steep: float


def run_lr_find(learn: Any, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100,
                stop_div: bool = True, show_plot: bool = True) -> SuggestedLRs:
    """``Learner.lr_find``: exponential LR ramp over ``num_it`` batches, then restore the training state.

    Model, optimizer, gradient scaler, ``learn.epochs_done`` and the torch/CUDA/numpy/Python RNGs are
    put back as they were, so a seeded fit after ``lr_find`` matches one without it.
    """
    from .callbacks import Callback, CancelFitException, CancelValidException, get_rng_states, set_rng_states

    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr_find needs 0 < start_lr < end_lr, got start_lr={start_lr!r}, end_lr={end_lr!r}")
    if num_it < 3:
        raise ValueError(f"lr_find needs num_it >= 3, got {num_it!r}")

    class _Finder(Callback):
        order = -10  # see a diverging loss before TerminateOnNaN does

        def before_fit(self) -> None:
            self.lrs, self.losses, self.best, self.avg, self.n = [], [], math.inf, 0.0, 0

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
            if (stop_div and smoothed > 4 * self.best) or len(self.lrs) >= num_it:
                raise CancelFitException()

    n_iter = len(learn.dls.train)
    n_epoch = math.ceil(num_it / n_iter)
    saved_model = copy.deepcopy(learn.raw_model.state_dict())
    saved_opt = copy.deepcopy(learn.opt.state_dict()) if learn.opt is not None else None
    # the scaler, the run-wide epoch count (it seeds shuffling and augmentation) and every RNG, so
    # that lr_find leaves the next fit exactly as it would have been without it
    scaler = learn.scaler
    saved_scaler = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
    epochs_done, rng = learn.epochs_done, get_rng_states()
    progress = getattr(learn, "progress", None)
    show_table = getattr(progress, "show_table", False)
    if progress is not None:
        progress.show_table = False
    finder = _Finder()

    def sched(pct: float) -> tuple[list[float], None]:
        i = min(round(pct * n_epoch * n_iter), num_it - 1)
        return [exp_lr(i, num_it, start_lr, end_lr)] * learn.n_groups, None

    try:
        learn._fit(n_epoch, sched, cbs=[finder])
    finally:
        learn.raw_model.load_state_dict(saved_model)
        if saved_opt is None:
            learn.opt = None
        else:
            learn.opt.load_state_dict(saved_opt)
        learn.scaler = scaler
        if saved_scaler:  # a disabled scaler has no state (and refuses an empty dict)
            scaler.load_state_dict(saved_scaler)
        learn.epochs_done = epochs_done
        set_rng_states(rng)
        if progress is not None:
            progress.show_table = show_table
    learn.recorder.lr_find_lrs, learn.recorder.lr_find_losses = finder.lrs, finder.losses
    if len(finder.lrs) < 3:
        raise ValueError(f"lr_find stopped after {len(finder.lrs)} batches (loss diverged at once); lower start_lr")
    sugg = SuggestedLRs(**suggest_lrs(finder.lrs, finder.losses))
    if show_plot:
        learn.recorder.plot_lr_find(sugg._asdict())
    return sugg
