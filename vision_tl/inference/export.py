"""Export a trained learner (or a ``Predictor``) to one ``.vtl`` file: what goes into the manifest.

The file format itself (write, read, check, payloads, extra entries) is ``vtl.py``'s; loading is
``load.py``'s (``load_learner`` is no longer importable from here). ``Predictor.export`` calls this
module, so it imports ``predict`` for type hints only. This module decides the manifest of a model: its ``ModelConfig``, vocab, preprocessing
spec and decoding fields, plus the entries that come from the learner (``learner_entries``: one line
per entry, e.g. a model card or the training items' hashes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .card import card_entry
from .fastai_names import export_name
from .train_items import train_items_entry
from .vtl import (  # noqa: F401 - as above
    FORMAT_NAME,
    ExportFormatError,
    describe_manifest,
    library_versions,
    read_manifest,
    weights_sha256,
    write_vtl,
)

if TYPE_CHECKING:
    from .predict import Predictor

__all__ = ["build_manifest", "decode_fields", "export_learner", "export_predictor", "learner_entries"]


def build_manifest(predictor: Predictor) -> dict[str, Any]:
    """The JSON-able manifest describing ``predictor`` (everything but the weights)."""
    cfg = predictor.model_config
    if cfg is None:
        raise ValueError(
            "export needs the ModelConfig the model was built from (learn.model_config), got None: "
            "models built by vision_learner have one; for a custom model save its state_dict instead"
        )
    return {
        "format": FORMAT_NAME,
        # softmax classifiers stay version 1 (readable by older vision_tl); multi-label (sigmoid) and regression
        # (no activation) files are version 2, so an older vision_tl refuses them instead of applying a softmax
        "format_version": 1 if predictor.activation == "softmax" else 2,
        **decode_fields(predictor),
        # the size the model was trained for, not its architecture's default (one input size in the manifest)
        "model_config": {**cfg.to_dict(), "input_size": _trained_size(predictor, cfg)},
        "vocab": list(predictor.vocab),
        **predictor.spec.to_dict(),  # item_tfms, batch_tfms, normalize, input_size, activation
        "versions": library_versions(),
    }


def _trained_size(predictor: Predictor, cfg: Any) -> list[int] | None:
    size = predictor.spec.input_size or cfg.input_size
    return None if size is None else list(size)


def decode_fields(predictor: Predictor) -> dict[str, Any]:
    """How outputs become predictions: ``multi_label``, ``activation`` (``"sigmoid"``/``"softmax"``) and the
    multi-label ``threshold`` (None for a single-label model)."""
    multi = predictor.multi_label
    return {"multi_label": multi, "activation": predictor.activation, "threshold": predictor.thresh if multi else None}


def learner_entries(learn: Any) -> dict[str, Any]:
    """Extra manifest entries that come from the learner rather than the model (see ``vtl.py``): each part of
    vision_tl that stores something with an export adds one line here."""
    return {
        **card_entry(learn),  # how the model was made (card.py)
        **train_items_entry(learn),  # hashes of the training files, for evaluate's warning (train_items.py)
    }


def export_predictor(predictor: Predictor, fname: str | Path, entries: Mapping[str, Any] | None = None,
                     payloads: Mapping[str, bytes] | None = None) -> Path:
    """Write ``predictor`` (model weights + manifest, plus extra manifest ``entries`` and ``payloads``, see
    ``vtl.py``) to one ``.vtl`` file; returns its path."""
    manifest = {**build_manifest(predictor), **(entries or {})}
    return write_vtl(fname, predictor.model.state_dict(), manifest, payloads)


def export_learner(learn: Any, predictor: Predictor, fname: str | Path = "export.vtl",
                   entries: Mapping[str, Any] | None = None, payloads: Mapping[str, bytes] | None = None) -> Path:
    """``learn.export``: write the learner's model, vocab and valid transforms (its ``predictor``) and the
    entries of ``learner_entries(learn)`` (plus ``entries`` and ``payloads``, e.g. ``int8.py``'s) to one ``.vtl`` file.

    A relative ``fname`` is taken relative to ``learn.path`` (as in fastai). Label functions,
    callbacks and other Python objects of the training setup are not saved and cannot break export.
    """
    path = Path(fname)
    if not path.is_absolute() and getattr(learn, "path", None) is not None:
        path = Path(learn.path) / path
    return export_predictor(predictor, export_name(path), {**learner_entries(learn), **(entries or {})}, payloads)


