"""Runners: what turns a batch of images into probabilities. A ``Predictor`` holds exactly one.

The whole interface (``Runner``)::

    runner(xb)          # uint8 NCHW RGB batch at the model's input size -> float32 (N, C) probabilities, CPU
    runner.name         # "torch", "onnxruntime", ... (``Predictor.backend``)
    runner.device       # where it runs (``Predictor.device``)
    runner.to(device)   # the runner on ``device``, or ValueError when it cannot move there
    runner.num_threads  # its intra-op thread pool

Everything before the batch (decoding, item transforms) and after it (labels, top-k, thresholds) is the
``Predictor``'s; everything between (scaling to float, the validation batch transforms, normalization,
the model, the final activation) is the runner's. So a new way of running a model (a CUDA or
TensorRT execution provider, an int8 graph) is one small subclass here and one branch in
``backends.py``; ``Predictor``, the ``.vtl`` format and ``load_learner`` stay as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.predict_step import predict_step
from ..models.preprocess import Preprocess

__all__ = ["OrtInt8Runner", "OrtRunner", "Runner", "TorchRunner"]


class Runner:
    """Base class: a callable from a uint8 NCHW batch to float32 probabilities ``(N, C)`` on the CPU."""

    name = "runner"
    precision = "fp32"  # the arithmetic of the forward pass ("int8": OrtInt8Runner)
    device = torch.device("cpu")

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device: str | torch.device) -> Runner:
        """This runner on ``device``; the base class stays where it is and refuses any other device."""
        if torch.device(device).type != self.device.type:
            raise ValueError(f"the {self.name} backend runs on {self.device.type}, got device {str(device)!r}: "
                             "load with backend='torch' to use it")
        return self

    @property
    def num_threads(self) -> int:
        """Threads of the pool the forward pass runs on (default: torch's)."""
        return torch.get_num_threads()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device}, threads={self.num_threads})"


class TorchRunner(Runner):
    """The torch model behind ``predict_step`` (the same step training's validation runs).

    Args:
        model: the classifier; only read, put in eval mode per call.
        spec: the ``Preprocess`` spec (batch transforms, normalization, activation).
        device: where the model runs (it is moved there).
        amp: float16 autocast on CUDA.
        channels_last: feed a channels-last input (the model should be channels-last too).
    """

    name = "torch"

    def __init__(self, model: nn.Module, spec: Preprocess, device: str | torch.device = "cpu", amp: bool = True,
                 channels_last: bool = False) -> None:
        self.model, self.spec, self.amp, self.channels_last = model, spec, amp, channels_last
        self.device = torch.device(device)
        model.to(self.device)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        return predict_step(self.model, xb, self.spec, self.device, amp=self.amp, channels_last=self.channels_last).cpu()

    def to(self, device: str | torch.device) -> TorchRunner:
        return TorchRunner(self.model, self.spec, device, self.amp, self.channels_last)


class OrtRunner(Runner):
    """An onnxruntime session of the graph ``export_onnx`` writes (uint8 input, preprocessing and activation
    inside): so it takes the same batches and returns the same probabilities as ``TorchRunner``.

    ``session`` is an ``onnxruntime.InferenceSession`` (``backends.ort_session`` makes one); this runner
    only feeds it. A GPU execution provider would be a subclass that sets ``device`` and, if it wants,
    binds inputs on the device.
    """

    name = "onnxruntime"

    def __init__(self, session: Any) -> None:
        self.session = session
        self._input = session.get_inputs()[0].name

    def __call__(self, xb: torch.Tensor | np.ndarray) -> torch.Tensor:
        feed = xb.numpy() if isinstance(xb, torch.Tensor) else xb
        return torch.from_numpy(self.session.run(None, {self._input: np.ascontiguousarray(feed)})[0])

    @property
    def num_threads(self) -> int:
        return int(self.session.get_session_options().intra_op_num_threads)


class OrtInt8Runner(OrtRunner):
    """An ``OrtRunner`` of the int8 graph stored in a ``.vtl`` file (``quantize.py``: onnxruntime's static QDQ
    quantization, checked against fp32 on held-out images); ``report`` is what that check measured."""

    precision = "int8"

    def __init__(self, session: Any, report: Any = None) -> None:
        super().__init__(session)
        self.report = report

    def __repr__(self) -> str:
        drop = "" if self.report is None else f", drop={self.report.drop:g} points"
        return f"{type(self).__name__}(device={self.device}, threads={self.num_threads}{drop})"
