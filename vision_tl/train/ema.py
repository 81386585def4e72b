"""``EMACallback``: an exponential moving average of the weights, validated, exported and resumed.

After every optimizer step each floating-point tensor of the model's state (parameters and
BatchNorm's running statistics alike) moves towards the live one::

    d = min(decay, (1 + n) / (10 + n)) if warmup else decay      # n: updates so far
    avg = d * avg + (1 - d) * live

(integer buffers, BatchNorm's batch count, are copied). Each epoch is validated twice: with the
average (the usual ``valid_loss`` and metrics, what early stopping and the best-model callback
watch) and with the live weights (extra Recorder columns ``raw_valid_loss``, ``raw_<metric>``), so
the table shows both. After a fit the model holds the average, so ``validate``, ``predict`` and
``export`` use it; the next fit trains on from the live weights (``use_live()`` puts them back by
hand, ``use_average()`` the average again; ``EMACallback(keep_average=False)`` leaves the live
weights in after each fit). A checkpoint stores the average, so a resumed run continues it
bit-identically. ``lr_find``'s trial run never touches it.
"""

from __future__ import annotations

import torch

from ..metrics import metric_name
from .callbacks import Callback, is_trial_fit

__all__ = ["EMACallback", "ema_decay"]


def ema_decay(decay: float, n: int, warmup: bool = True) -> float:
    """The decay of update number ``n`` (0-based): ``min(decay, (1 + n) / (10 + n))`` with warmup, as timm."""
    return min(decay, (1 + n) / (10 + n)) if warmup else decay


class EMACallback(Callback):
    """Keep an exponential moving average of the weights (see the module docstring).

    Args:
        decay: how much of the average each update keeps (0.999: about the last 1000 steps).
        warmup: ramp the decay up from 0.1 over the first steps, so the average forgets the start.
        keep_average: after each fit leave the average in the model (what ``export`` then writes).
        validate_live: also validate the live weights each epoch (the ``raw_*`` columns).
    """

    order = -40  # the extra validation of the live weights runs before GatherPreds resets for the usual one

    def __init__(self, decay: float = 0.999, warmup: bool = True, keep_average: bool = True,
                 validate_live: bool = True) -> None:
        if not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        self.decay, self.warmup, self.keep_average, self.validate_live = float(decay), warmup, keep_average, validate_live
        self.average: dict[str, torch.Tensor] | None = None
        self.n_updates = 0
        self.live_results: list[float] | None = None
        self._live: dict[str, torch.Tensor] | None = None  # the live weights while the average is in the model
        self._skip = self._nested = False

    def __repr__(self) -> str:
        return f"EMACallback(decay={self.decay}, warmup={self.warmup})"

    @property
    def name(self) -> str:
        return "ema"  # learn.ema (the default rule would say e_m_a)

    # ----- the average ------------------------------------------------------------------------------
    @property
    def holds_average(self) -> bool:
        """True while the model holds the average (after a fit, during validation)."""
        return self._live is not None

    def _state(self) -> dict[str, torch.Tensor]:
        return self.learn.raw_model.state_dict()

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average towards the model's current state (called after each optimizer step)."""
        d = ema_decay(self.decay, self.n_updates, self.warmup)
        for k, live in self._state().items():
            avg = self.average[k]
            if avg.is_floating_point():
                avg.mul_(d).add_(live.detach(), alpha=1 - d)
            else:
                avg.copy_(live)
        self.n_updates += 1

    @torch.no_grad()
    def use_average(self) -> None:
        """Put the average into the model (the live weights are kept aside)."""
        if self.average is None or self.holds_average:
            return
        state = self._state()
        self._live = {k: v.detach().clone() for k, v in state.items()}
        for k, v in state.items():
            v.copy_(self.average[k])

    @torch.no_grad()
    def use_live(self) -> None:
        """Put the live (trained) weights back into the model."""
        if self._live is None:
            return
        for k, v in self._state().items():
            v.copy_(self._live[k])
        self._live = None

    # ----- events ------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._skip = is_trial_fit(self.learn)
        if self._skip:
            return
        self.use_live()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in self._state().items()}
            self.n_updates = 0

    def recorded_columns(self) -> list[str]:
        if self._skip or not self.validate_live:
            return []
        return ["raw_valid_loss", *[f"raw_{metric_name(m)}" for m in self.learn.metrics]]

    def recorded_values(self) -> list[float]:
        if self._skip or not self.validate_live:
            return []
        n = 1 + len(self.learn.metrics)
        return list(self.live_results or [float("nan")] * n)

    def after_step(self) -> None:
        if not self._skip and self.learn.training:
            self.update()

    def before_validate(self) -> None:
        if self._skip or self._nested or not self.learn.fitting or self.average is None:
            return
        self.live_results = None
        if self.validate_live:
            self._nested = True
            try:
                self.live_results = self.learn.validate(self.learn.dl)
            finally:
                self._nested = False
        self.use_average()

    def after_validate(self) -> None:
        if not self._nested and self.learn.fitting and not self._skip:
            self.use_live()

    after_cancel_validate = after_validate

    def after_fit(self) -> None:
        if not self._skip and self.keep_average:
            self.use_average()

    # ----- resume ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.average is None:
            return {}
        return {"average": {k: v.detach().cpu().clone() for k, v in self.average.items()}, "n_updates": self.n_updates}

    def load_state_dict(self, d: dict) -> None:
        if "average" not in d:
            return
        own = self._state()
        self.average = {k: v.to(own[k].device).clone() for k, v in d["average"].items()}
        self.n_updates = int(d["n_updates"])
