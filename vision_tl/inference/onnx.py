"""Export a classifier to ONNX with its preprocessing inside the graph, and check it with onnxruntime.

The graph's input ``image`` is a batch of RGB images, NCHW, already resized to the model's input
size (the ``input_size`` metadata entry): ``uint8`` in 0-255 (the default) or ``float32`` in [0, 1]
(``input_dtype="float32"``). Scaling, the valid-time batch transforms and normalization happen
inside the graph; the output ``probs`` is ``(N, n_classes)``: the spec's activation (softmax
probabilities for a single-label classifier, per-class sigmoid probabilities for a multi-label one: a label
is predicted when its probability > the ``threshold`` metadata entry). The class names, input size, dtype,
``activation``, ``multi_label`` and ``threshold`` are stored in the model's ``metadata_props`` (``vocab``
is a JSON list).
Needs the ``onnx`` extra (onnx, onnxscript; onnxruntime for the check).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import sibling_temp
from ..models.predict_step import activate, prepare_batch
from .predict import Predictor
from .runners import TorchRunner

_DTYPES = ("uint8", "float32")
_OUTPUTS = {"softmax": "softmax probabilities", "sigmoid": "sigmoid probabilities", "none": "logits"}


class PreprocessedClassifier(nn.Module):
    """``model`` behind the predictor's preprocessing and activation: ``predict_step``'s own pieces
    (``prepare_batch``: to [0, 1] for uint8 input, the valid-time batch transforms, normalization;
    ``activate``), without its inference mode, which tracing cannot go through."""

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.model = predictor.model
        # a copy of the spec: its normalizer caches device constants, which tracing must not touch
        self.spec = replace(predictor.spec)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return activate(self.model(prepare_batch(image, self.spec, batch_tfms=True)), self.spec.activation)


def _input_size(predictor: Predictor) -> tuple[int, int]:
    size = predictor.spec.input_size or getattr(predictor.model_config, "input_size", None)
    if size is None:
        raise ValueError("export_onnx needs an input size: the predictor has no item transforms and no input_size")
    return tuple(size)


def export_onnx(learn_or_predictor: Any, fname: str | Path, input_dtype: str = "uint8", opset: int | None = None,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``learn_or_predictor`` (a ``Learner`` or ``Predictor``) to one ``.onnx`` file.

    The batch dimension is dynamic; height and width are the model's input size. The file is
    written under a temporary name and moved into place, so a failure leaves no partial file.
    ``metadata`` adds string entries to the model's ``metadata_props`` (e.g. a cache key).
    """
    try:
        import onnx  # noqa: F401 - needed by torch's exporter and for the metadata below
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError("export_onnx needs onnx and onnxscript (dependencies of vision_tl: reinstall it, "
                          f"or pip install onnx onnxscript) ({e})") from None
    if input_dtype not in _DTYPES:
        raise ValueError(f"input_dtype must be one of {_DTYPES}, got {input_dtype!r}")
    pred = learn_or_predictor if isinstance(learn_or_predictor, Predictor) else Predictor.from_learner(learn_or_predictor)
    path = Path(fname)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = _input_size(pred)
    device = pred.device
    wrapped = PreprocessedClassifier(pred).cpu().eval()
    example = torch.zeros(2, 3, h, w, dtype=getattr(torch, input_dtype))
    tmp = sibling_temp(path, ".onnx")
    was_training = pred.model.training
    try:
        pred.model.cpu().eval()
        program = torch.onnx.export(
            wrapped, (example,), input_names=["image"], output_names=["probs"], opset_version=opset, verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), external_data=False, dynamo=True,
        )
        program.model.metadata_props.update({**_metadata(pred, (h, w), input_dtype), **(metadata or {})})
        program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        pred.model.to(device).train(was_training)
    return path


def _metadata(pred: Predictor, size: tuple[int, int], input_dtype: str) -> dict[str, str]:
    """What a user of the ``.onnx`` file needs to feed it and read its output."""
    from .. import __version__

    return {
        "vocab": json.dumps(pred.vocab),
        "input_size": json.dumps(list(size)),
        "input_dtype": input_dtype,
        "input_layout": "NCHW RGB",
        "output": f"probs: {_OUTPUTS[pred.spec.activation]}, one column per vocab entry"
                  + ("; labels: probs > threshold" if pred.multi_label else ""),
        "multi_label": json.dumps(pred.multi_label),
        "threshold": json.dumps(pred.thresh if pred.multi_label else None),
        "activation": pred.activation,
        "item_tfms": json.dumps([t.to_dict() for t in pred.item_tfms]),
        "vision_tl_version": __version__,
    }


def onnx_session(fname: str | Path) -> Any:
    """An onnxruntime CPU ``InferenceSession`` for ``fname``."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("checking an ONNX model needs onnxruntime (a dependency of vision_tl: reinstall it, "
                          f"or pip install onnxruntime) ({e})") from None
    return ort.InferenceSession(str(fname), providers=["CPUExecutionProvider"])


def check_onnx(fname: str | Path, predictor: Predictor, images: Any = None, atol: float = 1e-4) -> float:
    """Max absolute difference between onnxruntime's and torch's probabilities on the same inputs.

    ``images`` is a uint8 NCHW batch at the input size (default: 4 seeded random images). Raises
    ``ValueError`` when the difference exceeds ``atol``.
    """
    sess = onnx_session(fname)
    inp = sess.get_inputs()[0]
    h, w = _input_size(predictor)
    if images is None:
        images = torch.randint(0, 256, (4, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = torch.as_tensor(images)
    feed = images.numpy() if inp.type == "tensor(uint8)" else (images.float() / 255).numpy()
    ort_probs = torch.from_numpy(sess.run(None, {inp.name: feed})[0])
    torch_probs = TorchRunner(predictor.model, predictor.spec, predictor.device, amp=False,
                              channels_last=predictor.channels_last)(images)
    diff = float((ort_probs - torch_probs).abs().max())
    if diff > atol:
        raise ValueError(f"ONNX model {str(fname)!r} disagrees with torch: max abs difference {diff:.2e} > {atol:.0e}")
    return diff
