"""Save and restore every random number generator a training run draws from.

A resumed checkpoint and ``lr_find`` both need the run to continue exactly as it would have: the
torch (CPU and CUDA), numpy and Python generators are captured together, in a form that
``torch.load(weights_only=True)`` reads back (tensors, ints, tuples; no numpy objects).
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["get_rng_states", "set_rng_states"]


def get_rng_states() -> dict:
    """torch (CPU, CUDA), numpy and Python RNG states, as plain tensors and tuples."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_states(d: dict) -> None:
    """Restore what ``get_rng_states`` returned (CUDA states only where CUDA is available)."""
    torch.set_rng_state(d["torch"])
    if d["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(d["cuda"])
    keys, pos, has_gauss, gauss = d["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, g = d["python"]
    random.setstate((version, tuple(internal), g))
