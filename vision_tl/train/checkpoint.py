"""Saving and loading a Learner's state: weights (``save``/``load``) and full resumable checkpoints.

A checkpoint (``save_checkpoint``) holds everything a killed run needs to continue bit-identically:
model, optimizer, gradient scaler, epoch, freezing, RNG states, the Recorder's history and the
training DataLoader's state. Files are written atomically, and under torchrun by rank 0 only.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..files import sibling_temp
from .distributed import barrier, is_main_process
from .optimizer import load_opt_state
from .rng import get_rng_states, set_rng_states

if TYPE_CHECKING:
    from .learner import TrainingLearner


def model_file(learn: TrainingLearner, name: str | Path) -> Path:
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


def save_weights(learn: TrainingLearner, name: str | Path, with_opt: bool = True) -> Path:
    """``Learner.save``: model (and optimizer) state to ``path/model_dir/name.pth``."""
    state = {"model": learn.raw_model.state_dict()}
    if with_opt and learn.opt is not None:
        state["opt"] = learn.opt.state_dict()
    return atomic_save(state, model_file(learn, name))


class CheckpointError(ValueError):
    """A ``.pth`` file ``Learner.load``/``fit(resume=)`` cannot use; ``.path`` names it, ``.reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot load {str(self.path)!r}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def _first_line(e: BaseException) -> str:
    """The first sentence of ``e``'s message (torch's run over several lines and sentences)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0].split(". ")[0] if lines else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _read_state(f: Path, map_location: Any, what: str, needs: tuple[str, ...]) -> dict:
    """``torch.load(f, weights_only=True)`` with every failure as one :class:`CheckpointError` naming ``f``.

    Nothing in the file is ever executed: a file that would need arbitrary Python objects to unpickle
    (a hostile or a foreign pickle) is refused before any of them is built.
    """
    if not f.is_file():
        raise FileNotFoundError(f"no {what} at {str(f)!r}" + (" (not a regular file)" if f.exists() else ""))
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():  # not a zip: torch tried the legacy pickle format
            raise CheckpointError(f, f"not a PyTorch file, or truncated or corrupt ({_first_line(e)})") from None
        bad = re.search(r"GLOBAL ([\w.]+)", str(e))
        detail = f" (it asks for {bad.group(1)})" if bad else ""
        raise CheckpointError(f, f"refused: it holds Python objects, not just tensors{detail}; unpickling it could "
                              "run code, and vision_tl never does that") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file: one line naming it
        size = f.stat().st_size
        kind = "empty (0 bytes)" if size == 0 else f"truncated or corrupt ({size} bytes)"
        raise CheckpointError(f, f"the file is {kind}, not a complete PyTorch file ({_first_line(e)})") from None
    if not isinstance(state, dict) or not all(k in state for k in needs):
        have = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f, f"not a vision_tl {what} (needs entries {list(needs)}, found {have})")
    return state


def _check_model_state(learn: TrainingLearner, sd: Any, f: Path, strict: bool = True) -> None:
    """One line naming ``f`` and how ``sd`` does not fit the model (missing, unexpected, other shapes)."""
    if not isinstance(sd, dict):
        raise CheckpointError(f, f"its 'model' entry is a {type(sd).__name__}, not a state dict")
    own = learn.raw_model.state_dict()
    missing = [k for k in own if k not in sd] if strict else []
    extra = [k for k in sd if k not in own] if strict else []
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(v.shape)]
    problems = []
    for found, what in ((missing, "missing tensors"), (extra, "unexpected tensors"),
                        (shapes, "shape mismatches (file vs model)")):
        if found:
            problems.append(f"{len(found)} {what} (e.g. {found[0]})")
    if problems:
        raise CheckpointError(f, "it was saved from another model: " + "; ".join(problems))


def _load_model_state(learn: TrainingLearner, sd: Any, f: Path, strict: bool = True) -> None:
    """Load ``sd`` into the model, or one line naming ``f`` and how it does not fit."""
    _check_model_state(learn, sd, f, strict)
    try:
        learn.raw_model.load_state_dict(sd, strict=strict)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f, f"it does not fit this model ({_first_line(e)})") from None


def _load_opt_state(opt: Any, sd: Any, f: Path) -> None:
    try:
        load_opt_state(opt, sd)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f, f"its optimizer state does not fit this model's optimizer ({_first_line(e)})") from None


def load_weights(learn: TrainingLearner, name: str | Path, with_opt: bool = True, strict: bool = True) -> None:
    """``Learner.load``: what ``save_weights`` wrote (safely: ``weights_only=True``).

    Raises ``FileNotFoundError`` when there is no such file and :class:`CheckpointError` (one line
    naming the file) when it is hostile, truncated, not ours, or from another model.
    """
    f = model_file(learn, name)
    state = _read_state(f, learn.device, "saved model", ("model",))
    _load_model_state(learn, state["model"], f, strict)
    if with_opt and "opt" in state:
        _load_opt_state(learn.opt or learn.create_opt(), state["opt"], f)


def save_checkpoint(learn: TrainingLearner, name: str | Path) -> Path:
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


_CHECKPOINT_KEYS = ("model", "opt", "scaler", "epoch", "frozen_to", "rng")


def read_checkpoint(learn: TrainingLearner, name: str | Path) -> dict:
    """The state ``save_checkpoint`` wrote, on the CPU (``resume=name``).

    Checked at once against the model (a checkpoint of another model is a :class:`CheckpointError`
    naming the file before training starts); the file's path travels along under ``"_file"``.
    """
    f = model_file(learn, name)
    if not f.is_file():
        raise FileNotFoundError(f"resume={str(name)!r}: no checkpoint at {str(f)!r}"
                                + (" (not a regular file)" if f.exists() else ""))
    state = _read_state(f, "cpu", "checkpoint", _CHECKPOINT_KEYS)
    _check_model_state(learn, state["model"], f)  # fails now, with the file named, not mid-fit
    return {**state, "_file": str(f)}


def restore_checkpoint(learn: TrainingLearner, state: dict) -> None:
    """Put ``state`` back into ``learn`` at the start of a resumed fit (its optimizer exists)."""
    f = Path(state.get("_file", "<checkpoint>"))
    _load_model_state(learn, state["model"], f)
    _load_opt_state(learn.opt, state["opt"], f)
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


def _cb_keys(learn: TrainingLearner) -> list[tuple[str, Any]]:
    """Each callback with a stable key (class name, and a count when a class appears twice)."""
    seen: dict[str, int] = {}
    out = []
    for cb in learn.cbs:
        n = type(cb).__name__
        seen[n] = seen.get(n, 0) + 1
        out.append((n if seen[n] == 1 else f"{n}#{seen[n]}", cb))
    return out


def _cb_states(learn: TrainingLearner) -> dict[str, dict]:
    """The callbacks' own resume state (the Recorder's history, best value so far, patience, ...)."""
    return {key: d for key, cb in _cb_keys(learn) if (d := cb.state_dict())}
