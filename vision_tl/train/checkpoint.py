"""Saving and loading a Learner's state: weights (``save``/``load``) and full resumable checkpoints.

A checkpoint (``save_checkpoint``) holds everything a killed run needs to continue bit-identically:
model, optimizer, gradient scaler, epoch, freezing, RNG states, the Recorder's history and the
training DataLoader's state. Files are written atomically, and under torchrun by rank 0 only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..files import sibling_temp
from .distributed import barrier, is_main_process
from .rng import get_rng_states, set_rng_states

if TYPE_CHECKING:
    from .learner import Learner


def model_file(learn: Learner, name: str | Path) -> Path:
    """``name`` with a ``.pth`` suffix, under ``learn.path / learn.model_dir`` unless absolute."""
    p = Path(name)
    if p.suffix != ".pth":
        p = p.with_name(p.name + ".pth")
    return p if p.is_absolute() else learn.path / learn.model_dir / p


def atomic_save(state: dict, f: Path) -> Path:
    """Write via a temporary file and rename, so a crash never leaves a half-written file.

    Under torchrun only rank 0 writes; every rank returns once the file is there.
    """
    if not is_main_process():
        barrier()
        return f
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_temp(f)
    try:
        torch.save(state, tmp)
        os.replace(tmp, f)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    barrier()
    return f


def save_weights(learn: Learner, name: str | Path, with_opt: bool = True) -> Path:
    """``Learner.save``: model (and optimizer) state to ``path/model_dir/name.pth``."""
    state = {"model": learn.raw_model.state_dict()}
    if with_opt and learn.opt is not None:
        state["opt"] = learn.opt.state_dict()
    return atomic_save(state, model_file(learn, name))


def load_weights(learn: Learner, name: str | Path, with_opt: bool = True, strict: bool = True) -> None:
    """``Learner.load``: what ``save_weights`` wrote (safely: ``weights_only=True``)."""
    f = model_file(learn, name)
    if not f.is_file():
        raise FileNotFoundError(f"no saved model at {str(f)!r}")
    state = torch.load(f, map_location=learn.device, weights_only=True)
    learn.raw_model.load_state_dict(state["model"], strict=strict)
    if with_opt and "opt" in state:
        (learn.opt or learn.create_opt()).load_state_dict(state["opt"])


def save_checkpoint(learn: Learner, name: str | Path) -> Path:
    """Everything needed to resume after this epoch: model, optimizer, scaler, epoch, RNGs, history."""
    state = {
        "model": learn.raw_model.state_dict(), "opt": learn.opt.state_dict(),
        "scaler": learn.scaler.state_dict() if learn.scaler is not None else {},
        "epoch": learn.epoch, "epochs_done": learn.epochs_done, "n_epoch": learn.n_epoch, "fit_index": learn.fit_index, "frozen_to": learn.frozen_to,
        "rng": get_rng_states(), "cbs": _cb_states(learn),
    }
    if hasattr(learn.dls.train, "state_dict"):
        state["dl"] = learn.dls.train.state_dict()
    return atomic_save(state, model_file(learn, name))


def read_checkpoint(learn: Learner, name: str | Path) -> dict:
    """The state ``save_checkpoint`` wrote, on the CPU (``resume=name``)."""
    f = model_file(learn, name)
    if not f.is_file():
        raise FileNotFoundError(f"resume={str(name)!r}: no checkpoint at {str(f)!r}")
    return torch.load(f, map_location="cpu", weights_only=True)


def restore_checkpoint(learn: Learner, state: dict) -> None:
    """Put ``state`` back into ``learn`` at the start of a resumed fit (its optimizer exists)."""
    learn.raw_model.load_state_dict(state["model"])
    learn.opt.load_state_dict(state["opt"])
    if state["scaler"] and learn.scaler is not None:
        learn.scaler.load_state_dict(state["scaler"])
    learn.freeze_to(state["frozen_to"])
    learn.start_epoch = state["epoch"] + 1
    learn.epochs_done = int(state.get("epochs_done", state["epoch"] + 1))  # counted at that epoch's start
    set_rng_states(state["rng"])
    if "dl" in state and hasattr(learn.dls.train, "load_state_dict"):
        learn.dls.train.load_state_dict(state["dl"])
    states = state.get("cbs", {})
    for key, cb in _cb_keys(learn):
        if key in states:
            cb.load_state_dict(states[key])


def _cb_keys(learn: Learner) -> list[tuple[str, Any]]:
    """Each callback with a stable key (class name, and a count when a class appears twice)."""
    seen: dict[str, int] = {}
    out = []
    for cb in learn.cbs:
        n = type(cb).__name__
        seen[n] = seen.get(n, 0) + 1
        out.append((n if seen[n] == 1 else f"{n}#{seen[n]}", cb))
    return out


def _cb_states(learn: Learner) -> dict[str, dict]:
    """The callbacks' own resume state (the Recorder's history, best value so far, patience, ...)."""
    return {key: d for key, cb in _cb_keys(learn) if (d := cb.state_dict())}
