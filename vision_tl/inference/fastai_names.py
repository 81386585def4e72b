"""fastai's file names for an export (``export.pkl``), mapped onto vision_tl's safe format.

The production chapter writes ``learn.export()`` and reads ``load_learner(path/'export.pkl')``.
vision_tl never pickles: ``learn.export()`` writes ``export.vtl`` (the ``.vtl`` twin of fastai's
``export.pkl``) and ``learn.export('model.pkl')`` writes vision_tl's format under the name given.
``load_learner`` on a ``.pkl`` name finds either one, with a one-line note that it is not a pickle.
A real fastai pickle is still refused by the loader (``vtl._sniff_foreign``), unchanged.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

__all__ = ["FastaiNameNote", "export_name", "load_name"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_SAFETENSORS_JSON = b"{"  # a safetensors file: an 8-byte header length, then its JSON header


class FastaiNameNote(UserWarning):
    """A note that a fastai file name (``.pkl``) holds or finds vision_tl's safe format, not a pickle."""


def _note(msg: str) -> None:
    """Warn at the user's line: the first frame outside the vision_tl package."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, FastaiNameNote, stacklevel=level)


def export_name(path: Path) -> Path:
    """The file ``learn.export(path)`` writes: ``path`` itself; a ``.pkl`` name gets a note that the file
    holds vision_tl's format."""
    if path.suffix.lower() == ".pkl":
        _note(f"{path.name}: written in vision_tl's safe format (weights + JSON manifest), not a pickle; "
              "read it with vision_tl's load_learner")
    return path


def load_name(path: Path) -> Path:
    """The file ``load_learner(path)`` reads: a missing ``x.pkl`` whose ``x.vtl`` exists is that twin; an
    existing ``.pkl`` in vision_tl's format is read as it is. Either gets a one-line note; anything else
    (a real pickle included) is returned unchanged for the loader to judge."""
    if path.suffix.lower() != ".pkl":
        return path
    twin = path.with_suffix(".vtl")
    if not path.exists() and twin.exists():
        _note(f"{path.name} not found: loading {twin.name}, the vision_tl export (a safe format, not a pickle) "
              "that learn.export() writes for fastai's export.pkl")
        return twin
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return path
    if len(head) == 9 and head[8:9] == _SAFETENSORS_JSON:
        _note(f"{path.name}: a vision_tl export (a safe format, not a pickle)")
    return path
