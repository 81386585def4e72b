"""Learning-rate and momentum schedules as pure functions (the LR finder itself is in ``lr_find.py``).

Everything here is a function of training progress ``pct`` in [0, 1] (or of an iteration
count), so it is easy to test and a resumed run recomputes the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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
