"""A batch size that fits the data when the user gave none, and the warning for epochs of a few steps.

fastai's ``bs=64`` on 72 training images is one optimizer step per epoch: a few epochs then end at
chance with no word said. :func:`auto_bs` picks the largest power of two (at most 64) that still gives
about ``MIN_STEPS * 2`` steps per epoch; :func:`few_steps_message` says when an epoch is shorter
than ``MIN_STEPS`` steps, whoever chose the batch size.
"""

from __future__ import annotations

__all__ = ["MAX_AUTO_BS", "MIN_STEPS", "auto_bs", "few_steps_message"]

MAX_AUTO_BS = 64  # fastai's default, kept for every set large enough
MIN_STEPS = 4  # fewer optimizer steps than this per epoch: warn
_TARGET_STEPS = 8
_MIN_AUTO_BS = 4  # BatchNorm statistics of 2 images are noise


def auto_bs(n_train: int) -> int:
    """The batch size for ``n_train`` training items: the largest power of two <= 64 that gives at least
    8 steps per epoch (4 for the smallest sets)."""
    bs = MAX_AUTO_BS
    while bs > _MIN_AUTO_BS and n_train // bs < _TARGET_STEPS:
        bs //= 2
    return bs


def few_steps_message(n_steps: int, n_train: int, bs: int) -> str | None:
    """What to say when an epoch has fewer than ``MIN_STEPS`` optimizer steps (None when it has enough)."""
    if n_steps >= MIN_STEPS:
        return None
    better = auto_bs(n_train)
    hint = (f"pass a smaller batch size (bs={better} gives {n_train // better} steps)" if better < bs
            else "add training images")
    return (f"an epoch is {n_steps} optimizer step(s) ({n_train} training images, batch size {bs}): the model "
            f"will barely train; {hint}")
