"""Give a ``.vtl`` model its int8 graph: at export (``learn.export(..., int8=True)``) or later
(``vision-tl quantize MODEL --calib DIR``, ``quantize_vtl``).

Both build the model's fp32 ONNX graph (``onnx.py``, checked against torch), decode the labelled images
as the graph takes them (the model's validation item transforms), calibrate on part of them and check
int8 against fp32 on the rest (``quantize.py``), then store the int8 graph as the payload ``onnx_int8``
and its ``Int8Report`` as the manifest entry ``int8`` (``vtl.py``'s extension points). When int8 loses
more than ``max_drop`` accuracy points, ``Int8Refused`` is raised before anything is written: a file
being exported is not created (nor an existing one replaced), a file being quantized stays as it was.
``load_learner(path, precision="int8")`` then runs the stored graph (``backends.int8_runner``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .export import export_learner
from .load import predictor_from_vtl
from .onnx import check_onnx, export_onnx
from .quantize import (
    DEFAULT_MAX_DROP,
    INT8_ENTRY,
    INT8_PAYLOAD,
    Int8Report,
    images_as_graph_input,
    int8_entry,
    quantize_graph,
    split_for_calibration,
)
from .vtl import read_vtl, update_vtl

__all__ = ["export_int8", "int8_parts", "quantize_vtl"]


def fp32_graph(pred: Any) -> bytes:
    """``pred``'s fp32 ONNX graph (uint8 in, probabilities out), checked against torch within 1e-4."""
    with tempfile.TemporaryDirectory(prefix="vision_tl_int8_") as tmp:
        fname = export_onnx(pred, Path(tmp) / "fp32.onnx")
        check_onnx(fname, pred, atol=1e-4)
        return fname.read_bytes()


def _targets(pred: Any, labels: Sequence[Any], where: str) -> np.ndarray:
    """Class indices (single-label) or a 0/1 matrix (multi-label) for ``labels`` given as class names or
    indices (single-label), or as lists of either (multi-label)."""
    def index(lab: Any) -> int:
        if isinstance(lab, (int, np.integer)) and 0 <= lab < pred.c:
            return int(lab)
        if str(lab) in pred.vocab:
            return pred.vocab.index(str(lab))
        raise ValueError(f"label {lab!r} in {where} is not a class of the model {pred.vocab[:10]!r}")

    if not pred.multi_label:
        return np.array([index(lab) for lab in labels], dtype=np.int64)
    hot = np.zeros((len(labels), pred.c), dtype=bool)
    for i, labs in enumerate(labels):
        hot[i, [index(lab) for lab in labs]] = True
    return hot


def int8_parts(pred: Any, items: Sequence[Any], labels: Sequence[Any], *, max_drop: float = DEFAULT_MAX_DROP,
               target: str = "the model", calibrated_on: str = "labelled images",
               num_threads: int | None = None) -> tuple[dict[str, Any], dict[str, bytes], Int8Report]:
    """``(manifest entries, payloads, report)`` that give ``pred``'s ``.vtl`` file its int8 graph.

    ``items`` (anything ``Predictor.predict`` takes) with ``labels`` are split by ``split_for_calibration``:
    half calibrate (at most 256), the others check (at most 1000). Raises ``Int8Refused`` past ``max_drop``.
    """
    if pred.activation == "none":
        raise ValueError(f"int8 needs a classifier; {target} is a regression model (no classes to check accuracy on)")
    items = list(items)
    if len(items) != len(labels):
        raise ValueError(f"{len(items)} images but {len(labels)} labels for int8 calibration of {target}")
    targets = _targets(pred, labels, calibrated_on)
    calib, check = split_for_calibration(len(items))
    graph, report = quantize_graph(
        fp32_graph(pred), images_as_graph_input(pred, [items[i] for i in calib]),
        images_as_graph_input(pred, [items[i] for i in check]), targets[check], multi_label=pred.multi_label,
        threshold=pred.thresh, max_drop=max_drop, target=target, num_threads=num_threads,
    )
    return {INT8_ENTRY: int8_entry(report, calibrated_on)}, {INT8_PAYLOAD: graph}, report


def _valid_items(learn: Any) -> tuple[list[Any], list[Any]]:
    """The learner's validation items and labels (indices, or index tuples when multi-label)."""
    ds = getattr(getattr(learn, "dls", None), "valid_ds", None)
    items, labels = getattr(ds, "items", None), getattr(ds, "labels", None)
    if not items or labels is None:
        raise ValueError("export(int8=True) calibrates on the learner's validation images, and this learner has "
                         "none with labels: export without int8, then run `vision-tl quantize MODEL --calib DIR`")
    return list(items), list(labels)


def export_int8(learn: Any, predictor: Any, fname: str | Path, max_drop: float = DEFAULT_MAX_DROP) -> Path:
    """``learn.export(fname, int8=True)``: the ``.vtl`` file with an int8 graph calibrated and checked on the
    learner's validation images; nothing is written when int8 is refused (``Int8Refused``)."""
    path = Path(fname)
    if not path.is_absolute() and getattr(learn, "path", None) is not None:
        path = Path(learn.path) / path  # as export_learner resolves it, so the error names the real file
    items, labels = _valid_items(learn)
    entries, payloads, _ = int8_parts(predictor, items, labels, max_drop=max_drop, target=repr(str(path)),
                                      calibrated_on=f"{len(items)} validation images of the learner")
    return export_learner(learn, predictor, path, entries=entries, payloads=payloads)


def quantize_vtl(fname: str | Path, items: Sequence[Any], labels: Sequence[Any], max_drop: float = DEFAULT_MAX_DROP,
                 calibrated_on: str = "labelled images", num_threads: int | None = None) -> Int8Report:
    """Add (or replace) the int8 graph of an existing ``.vtl`` file, calibrated and checked on ``items``/``labels``.

    The file is rewritten atomically (``update_vtl``) only when int8 passes; on ``Int8Refused`` or any
    other error it is left as it was. Returns the report.
    """
    vtl = read_vtl(fname)
    pred = predictor_from_vtl(vtl, "cpu")
    entries, payloads, report = int8_parts(pred, items, labels, max_drop=max_drop, target=repr(str(vtl.path)),
                                           calibrated_on=calibrated_on, num_threads=num_threads)
    update_vtl(vtl.path, entries=entries, payloads=payloads)
    return report
