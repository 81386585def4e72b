"""The one prediction step: a batch of images in, activations out.

``predict_step`` is what every prediction runs: ``Learner.get_preds`` and validation (through
``prepare_batch`` and ``activate``, inside the training loop), ``Predictor`` (``load_learner``,
``learn.predict``), TTA, interpretation, and the ONNX export and its check. Steps, in order: device
move; for a uint8 batch the validation batch transforms (a float batch has had them from its
DataLoader); normalization from the ``Preprocess`` spec; channels-last and autocast; the model; the
spec's final activation (softmax, sigmoid or none) in float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn

from ..data.batch_tfms import apply_batch_tfms
from .preprocess import Preprocess


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def prepare_batch(xb: Tensor, spec: Preprocess, device: torch.device | None = None, normalize: bool = True,
                  batch_tfms: bool | None = None) -> Tensor:
    """The model's input for ``xb``: on ``device``, batch-transformed, normalized.

    ``batch_tfms=None`` applies the spec's validation batch transforms to a uint8 batch only (a float
    batch comes from a DataLoader that applied them); ``normalize=False`` when the DataLoader already
    normalizes (a user's ``Normalize`` in its ``batch_tfms``).
    """
    if device is not None:
        xb = xb.to(device, non_blocking=True)
    norm = spec.normalizer if normalize else None
    if batch_tfms or (batch_tfms is None and xb.dtype == torch.uint8):  # the same path as the DataLoaders'
        return apply_batch_tfms(xb, spec.batch_tfms, train=False, normalize=norm)
    return xb if norm is None else norm(xb)


def activate(out: Tensor, activation: str) -> Tensor:
    """The final activation in float32: ``"softmax"`` over classes, ``"sigmoid"`` per class, or ``"none"``."""
    out = out.float()
    if activation == "softmax":
        return torch.softmax(out, dim=-1)
    if activation == "sigmoid":
        return torch.sigmoid(out)
    if activation == "none":
        return out
    raise ValueError(f"activation must be 'softmax', 'sigmoid' or 'none', got {activation!r}")


def predict_step(model: nn.Module, xb: Tensor, spec: Preprocess, device: torch.device | None = None,
                 normalize: bool = True, amp: bool = False, channels_last: bool = False) -> Tensor:
    """Activations (float32, on the model's device) of ``model`` for the image batch ``xb``.

    ``amp`` runs the forward pass under float16 autocast on CUDA; ``channels_last`` feeds the model a
    channels-last input (the model should be channels-last too). The model is in eval mode for the
    call and gradients are off.
    """
    x = prepare_batch(xb, spec, device, normalize)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp and x.device.type == "cuda" else nullcontext()
    with eval_mode(model), torch.inference_mode(), autocast:
        out = model(x)
    return activate(out, spec.activation)
