"""``vision_learner``: a Learner for transfer learning from a pretrained backbone.

Builds body + head, the ``ModelConfig`` saved with the weights, the normalization from the
backbone's stats, and the parameter groups (optionally one per layer with decayed LRs).
``learner.py`` re-exports ``vision_learner`` and ``cnn_learner``, so this module imports the
Learner inside the factory rather than at the top.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..models.build import config_for
from ..models.split import default_splitter, layerwise_splitter
from . import schedule
from .param_groups import adamw

if TYPE_CHECKING:
    from .learner import Learner


def vision_learner(
    dls: Any, arch: Any, pretrained: bool = True, weights: str | Path | None = None, metrics: Any = None,
    loss_func: Callable | None = None, opt_func: Callable = adamw, lr: float | slice = 1e-3,
    splitter: Callable | None = None, cbs: Any = None, path: str | Path | None = None, model_dir: str | Path = "models",
    wd: float | None = None, train_bn: bool = True, moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
    normalize: bool = True, n_out: int | None = None, concat_pool: bool = True, lin_ftrs: list[int] | None = None,
    ps: float = 0.5, first_bn: bool = True, bn_final: bool = False, custom_head: nn.Module | None = None,
    layer_decay: float | None = None, device: torch.device | str | None = None, compile: bool = False,
    amp: bool | None = None, y_range: tuple[float, float] | None = None,
) -> Learner:
    """A Learner for transfer learning: pretrained ``arch`` body + a new head sized to ``dls.c``.

    ``arch``: a timm name (``"resnet34"``), a torchvision builder or an ``nn.Module`` body;
    ``weights``: a local ``.safetensors``/``.pth`` file for the body (works offline). The
    backbone's normalization stats are appended to ``dls.batch_tfms`` when ``normalize`` and none
    is there. ``layer_decay`` (e.g. 0.75) gives one group per body layer with timm-style decayed
    LRs. ``y_range=(low, high)`` squashes the outputs into that range (``SigmoidRange``, for
    regression). The model starts frozen (head only) when pretrained.

    Example:
        >>> learn = vision_learner(dls, "resnet34", metrics=error_rate)
        >>> learn.fine_tune(1)
    """
    from ..models.backbones import create_body
    from ..models.heads import create_head
    from .learner import Learner

    n_out = n_out if n_out is not None else getattr(dls, "c", None)
    if not isinstance(n_out, int) or n_out < 1:
        raise ValueError(f"n_out must be a positive int (default: dls.c), got {n_out!r}")
    body, nf, stats = create_body(arch, pretrained=pretrained, weights=weights)
    head = custom_head if custom_head is not None else create_head(
        nf, n_out, lin_ftrs=lin_ftrs, ps=ps, concat_pool=concat_pool, first_bn=first_bn, bn_final=bn_final,
        y_range=y_range)
    model = nn.Sequential(body, head)
    cfg = None if custom_head is not None else config_for(
        arch, n_out, stats, concat_pool=concat_pool, lin_ftrs=lin_ftrs, ps=ps, bn_final=bn_final, first_bn=first_bn,
        y_range=y_range)
    if normalize:
        _add_normalize(dls, stats)
    lr_mults = None
    if layer_decay is not None:
        if splitter is not None:
            raise ValueError("pass either splitter or layer_decay, not both")
        splitter = layerwise_splitter
        lr_mults = schedule.layer_decay_mults(len(layerwise_splitter(model)), layer_decay)
    learn = Learner(dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=splitter or default_splitter,
                    cbs=cbs, metrics=metrics, path=path, model_dir=model_dir, wd=wd, train_bn=train_bn, moms=moms,
                    model_config=cfg, device=device, lr_mults=lr_mults, amp=amp)
    if (pretrained or weights is not None) and learn.n_groups > 1:
        learn.freeze()
    if compile:
        learn.model = torch.compile(learn.model)
    return learn


def _add_normalize(dls: Any, stats: dict) -> None:
    from ..data.batch_tfms import Normalize

    tfms = getattr(dls, "batch_tfms", None)
    if tfms is None:
        return
    if not any(isinstance(t, Normalize) for t in tfms):
        tfms.append(Normalize.from_stats(stats["mean"], stats["std"]))


cnn_learner = vision_learner
