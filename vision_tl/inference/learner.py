"""The public ``Learner``: the training Learner plus prediction, TTA, results and export.

``train/learner.py`` holds the loop and everything training needs; prediction and export live in
this layer, which may import ``train`` but not the other way round. So the conveniences fastai users
expect on a learner (``learn.predict``, ``learn.export``, ...) are methods of this subclass, and
``vision_tl.Learner``, ``vision_learner`` and ``cnn_learner`` build it. Each method is a thin call
into the inference modules (``predict.py``, ``tta.py``, ``interpret.py``, ``export.py``, ``onnx.py``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..train import vision_learner as _vision
from ..train.distributed import rank0_only
from ..train.learner import TrainingLearner
from .export import export_learner
from .int8 import export_int8
from .interpret import show_results
from .onnx import export_onnx
from .predict import Predictor
from .quantize import DEFAULT_MAX_DROP
from .tta import tta

__all__ = ["Learner", "cnn_learner", "vision_learner"]


class Learner(TrainingLearner):
    """A training ``Learner`` that also predicts, shows results and exports (see ``vision_learner``)."""

    def predict(self, item: Any) -> tuple:
        """``(label, index, probs)`` for one image (path, bytes, PIL image or array); for multi-label data
        ``(labels, bool mask, probs)`` with the labels above the loss's ``thresh``."""
        return self._predictor().predict(item)

    def predict_batch(self, items: Sequence[Any], **kwargs: Any) -> Any:
        """Class probabilities ``(n, c)`` for many images, decoded in worker processes (see ``Predictor``)."""
        return self._predictor().predict_batch(items, **kwargs)

    def top_k(self, item: Any, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely ``(label, probability)`` pairs for one image, most likely first."""
        return self._predictor().top_k(item, k)

    def _predictor(self) -> Predictor:
        """The ``Predictor`` of this learner, rebuilt only when what it was built from changed."""
        model = self.raw_model
        param = next(model.parameters(), None)
        dls = self.dls
        key = (model, None if param is None else (param.device, param.dtype), dls, tuple(dls.vocab),
               tuple(repr(t) for t in dls.item_tfms), tuple((id(t), repr(t)) for t in dls.batch_tfms),
               self.model_config, self.preprocess_stats, getattr(self.loss_func, "thresh", None))
        cached = getattr(self, "_predictor_cache", None)
        if cached is None or cached[0] != key:  # the model and dls compare by identity
            self._predictor_cache = (key, Predictor.from_learner(self))
        return self._predictor_cache[1]

    def grad_cam(self, item: Any, target: int | str | None = None, layer: nn.Module | None = None) -> Any:
        """The Grad-CAM heatmap ``(H, W)`` in ``[0, 1]`` for one image (``vision_tl.inference.cam``)."""
        return self._predictor().grad_cam(item, target, layer)

    def show_cam(self, item: Any, target: int | str | None = None, layer: nn.Module | None = None,
                 **kwargs: Any) -> Any:
        """Draw one image with its Grad-CAM heatmap on top; returns the matplotlib axes."""
        return self._predictor().show_cam(item, target, layer, **kwargs)

    def tta(self, **kwargs: Any) -> Any:
        """Test-time augmentation: ``(probs, targets)`` (see ``vision_tl.inference.tta.tta``)."""
        return tta(self, **kwargs)

    def show_results(self, **kwargs: Any) -> Any:
        """Validation images titled ``actual / predicted`` (None, or the ``Figure`` with ``return_fig=True``)."""
        return show_results(self, **kwargs)

    def export(self, fname: str | Path = "export.vtl", int8: bool = False, max_drop: float = DEFAULT_MAX_DROP,
               verbose: bool = True) -> Path:
        """Write the ``.vtl`` file (a relative ``fname`` goes under ``learn.path``, the data folder, as in
        fastai) and print where, unless ``verbose=False``. Under torchrun rank 0 writes; the others get None.

        ``int8=True`` also stores an int8 graph for ``load_learner(..., precision="int8")``, calibrated on
        part of the validation images and checked on the others; when it loses more than ``max_drop``
        accuracy points ``Int8Refused`` is raised and nothing is written (``inference/int8.py``).
        Callbacks with an ``after_export`` method (the trackers) then see the file as ``learn.export_path``.
        """
        if int8:
            self.export_path = rank0_only(export_int8)(self, self._predictor(), fname, max_drop)
        else:
            self.export_path = rank0_only(export_learner)(self, self._predictor(), fname)
        if verbose and self.export_path is not None:
            print(f"exported to {Path(self.export_path).resolve()}")
        self("after_export")
        return self.export_path

    def export_onnx(self, fname: str | Path, **kwargs: Any) -> Path:
        """Write a ``.onnx`` file with the preprocessing inside (see ``vision_tl.inference.onnx``)."""
        return rank0_only(export_onnx)(self, fname, **kwargs)


@functools.wraps(_vision.vision_learner)
def vision_learner(dls: Any, arch: Any, *args: Any, **kwargs: Any) -> Learner:
    kwargs.setdefault("learner_cls", Learner)
    return _vision.vision_learner(dls, arch, *args, **kwargs)


_signature = inspect.signature(_vision.vision_learner)
vision_learner.__signature__ = _signature.replace(parameters=[  # type: ignore[attr-defined]
    p.replace(default=Learner, annotation="type[Learner]") if p.name == "learner_cls" else p
    for p in _signature.parameters.values()])


cnn_learner = vision_learner
