"""The preprocessing spec: what turns a decoded image into the model's input, as plain data.

``Preprocess`` holds the validation item transforms, the validation batch transforms, the
normalization statistics, the input size and the final activation. ``vision_learner`` decides it
once, from the weights actually loaded (``decide_stats``); the Learner holds it, ``export`` saves it
(``to_dict``: the manifest's ``item_tfms``/``batch_tfms``/``normalize``/``input_size``/``activation``
fields) and ``load_learner``, the ``Predictor`` and the ONNX export rebuild it (``from_dict``).

Normalization is never inserted into a user's DataLoaders: the Learner and ``predict_step`` apply
it from the spec. A ``Normalize`` the user put into ``batch_tfms`` (fastai style) stays theirs: the
spec takes its statistics and the loop does not normalize a second time (``has_normalize``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from ..data.batch_tfms import Normalize, batch_tfm_from_dict
from ..data.item_tfms import item_tfm_from_dict
from ..data.registry import is_serializable

ACTIVATIONS = ("softmax", "sigmoid", "none")


@dataclass
class Preprocess:
    """How images become model inputs, and model outputs become probabilities.

    Args:
        item_tfms: validation item transforms (uint8 HWC -> uint8 HWC at the input size).
        batch_tfms: validation batch transforms (a ``Normalize`` given here becomes ``mean``/``std``).
        mean, std: per-channel normalization after the batch transforms; ``None``: no normalization.
        input_size: ``(h, w)`` the model sees (default: the last item transform's size).
        activation: ``"softmax"`` (single-label), ``"sigmoid"`` (multi-label) or ``"none"`` (logits).
    """

    item_tfms: list[Any] = field(default_factory=list)
    batch_tfms: list[Any] = field(default_factory=list)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] | None = None
    activation: str = "softmax"
    normalizer: Normalize | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.item_tfms = list(self.item_tfms or [])
        tfms = list(self.batch_tfms or [])
        norms = [t for t in tfms if isinstance(t, Normalize)]
        if norms and self.mean is None:
            self.mean, self.std = norms[-1].mean, norms[-1].std
        self.batch_tfms = sorted((t for t in tfms if not isinstance(t, Normalize)), key=lambda t: getattr(t, "order", 50))
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"Preprocess needs both mean and std or neither, got mean={self.mean!r}, std={self.std!r}")
        if self.mean is not None:
            self.normalizer = Normalize(self.mean, self.std)  # validates; caches its device constants
            self.mean, self.std = self.normalizer.mean, self.normalizer.std
        if self.input_size is None and self.item_tfms:
            self.input_size = getattr(self.item_tfms[-1], "size", None)
        if self.input_size is not None:
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @classmethod
    def from_dls(cls, dls: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 activation: str | None = None) -> Preprocess:
        """The validation transforms of ``dls``; a ``Normalize`` in ``dls.batch_tfms`` wins over ``mean``/``std``.

        ``activation=None`` follows the data: ``"sigmoid"`` for multi-label sets, ``"none"`` for regression
        targets, else ``"softmax"``."""
        if activation is None:
            kind = getattr(dls, "target_kind", None)
            activation = ("sigmoid" if getattr(dls, "multi_label", False) else "none" if kind == "regression"
                          else "softmax")
        batch_tfms = list(getattr(dls, "batch_tfms", None) or [])
        spec = cls(list(getattr(dls, "item_tfms", None) or []), batch_tfms, None, None, activation=activation)
        if spec.mean is None and mean is not None:
            spec = replace(spec, mean=tuple(mean), std=tuple(std))
        return spec

    def with_dls(self, dls: Any) -> Preprocess:
        """This spec's normalization and activation with ``dls``'s current validation transforms."""
        return Preprocess.from_dls(dls, self.mean, self.std, self.activation)

    def with_stats(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> Preprocess:
        """This spec with other normalization statistics (``None``: no normalization)."""
        return replace(self, mean=None if mean is None else tuple(mean), std=None if std is None else tuple(std))

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` per channel; ``x`` unchanged when the spec has no statistics."""
        return x if self.normalizer is None else self.normalizer(x)

    def to_dict(self) -> dict[str, Any]:
        """The manifest fields (JSON-able). Batch transforms outside the registry are left out, with a warning."""
        for t in self.item_tfms:
            if not is_serializable(t):
                raise ValueError(
                    f"export: item transform {t!r} cannot be saved (it is not a registered transform); the loaded "
                    "model would see differently prepared images. Use vision_tl's Resize / RandomResizedCrop"
                )
        batch = []
        for t in self.batch_tfms:
            if not is_serializable(t):
                warnings.warn(f"export: batch transform {t!r} is not a vision_tl transform and is not saved; "
                              "the loaded model predicts without it", stacklevel=4)
                continue
            batch.append(t.to_dict())
        return {
            "item_tfms": [t.to_dict() for t in self.item_tfms],
            "batch_tfms": batch,
            "normalize": None if self.mean is None else {"mean": list(self.mean), "std": list(self.std)},
            "input_size": None if self.input_size is None else list(self.input_size),
            "activation": self.activation,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """Rebuild from ``to_dict()`` output or an older manifest (no ``activation``: softmax)."""
        norm = d.get("normalize")
        mean, std = (None, None) if norm is None else (tuple(norm["mean"]), tuple(norm["std"]))
        size = d.get("input_size")
        return cls(
            [item_tfm_from_dict(t) for t in d.get("item_tfms") or []],
            [batch_tfm_from_dict(t) for t in d.get("batch_tfms") or []],
            mean, std, None if size is None else tuple(size), d.get("activation", "softmax"),
        )


def weights_stats(fname: str | Path | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` stored with a weights file, or ``None`` (a ``.pth`` never has them).

    Read from a safetensors header: metadata ``mean``/``std`` (JSON lists, as vision_tl exports
    write them), else a vision_tl manifest's ``normalize``. Only the header is read.
    """
    if fname is None or Path(fname).suffix not in (".safetensors", ".vtl"):
        return None
    from safetensors import safe_open

    with safe_open(str(fname), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        if "mean" in meta and "std" in meta:
            return tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"]))
        norm = json.loads(meta.get("vision_tl.manifest", "{}")).get("normalize")
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise ValueError(f"weights file {str(fname)!r}: unreadable mean/std metadata ({e})") from None
    return None if not norm else (tuple(norm["mean"]), tuple(norm["std"]))


def decide_stats(
    arch_stats: dict, weights: str | Path | None = None, mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None, dls: Any = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalization a model is trained and served with, decided once, in this order.

    1. ``mean``/``std`` passed by the user (or a ``Normalize`` already in ``dls.batch_tfms``);
    2. the statistics stored with the ``weights`` file;
    3. the architecture's pretrained config (``arch_stats``: timm ``pretrained_cfg``, ImageNet for torchvision).

    Warns when 1 or 2 differ from 3 (right for weights trained that way, a mistake otherwise).
    """
    if (mean is None) != (std is None):
        raise ValueError(f"pass both mean and std or neither, got mean={mean!r}, std={std!r}")
    user = None if mean is None else (tuple(float(m) for m in mean), tuple(float(s) for s in std))
    norms = [t for t in getattr(dls, "batch_tfms", None) or [] if isinstance(t, Normalize)]
    if norms:
        theirs = (norms[-1].mean, norms[-1].std)
        if user is not None and user != theirs:
            raise ValueError(f"mean/std {user} contradict the Normalize{theirs} in dls.batch_tfms: pass one of them")
        user = theirs
    default = (tuple(float(m) for m in arch_stats["mean"]), tuple(float(s) for s in arch_stats["std"]))
    chosen, source = (user, "the mean/std given") if user is not None else (weights_stats(weights), f"weights file {str(weights)!r}")
    if chosen is None:
        return default
    if chosen != default:
        warnings.warn(f"normalizing with {chosen} from {source}, not the architecture's default {default}",
                      UserWarning, stacklevel=3)
    return chosen
