"""``vision_learner``: a Learner for transfer learning from a pretrained backbone.

Describes the model as a ``ModelConfig`` (saved with the weights) and has ``models/build.py`` build
it, the same function ``load_learner`` rebuilds it with; then the ``Preprocess`` spec (its
normalization decided once from the weights actually loaded: ``models.preprocess.decide_stats``),
and the parameter groups (optionally one per layer with decayed LRs). The caller's ``dls`` is never
changed. ``learner_cls`` is the class built: the inference layer's ``vision_tl.vision_learner``
passes its ``Learner`` (this one, plus ``predict``/``export``/``tta``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.build import build_custom_model, build_model_and_stats, config_for
from ..models.param_groups import default_splitter, layerwise_splitter
from ..models.preprocess import Preprocess, decide_stats
from . import schedule
from .learner import TrainingLearner


def vision_learner(
    dls: Any, arch: Any, pretrained: bool = True, weights: str | Path | None = None, *, weights_map: Any = None,
    normalize: bool = True,
    mean: Sequence[float] | None = None, std: Sequence[float] | None = None, n_out: int | None = None,
    concat_pool: bool = True, lin_ftrs: list[int] | None = None, ps: float = 0.5, first_bn: bool = True,
    bn_final: bool = False, custom_head: nn.Module | None = None, splitter: Callable | None = None,
    layer_decay: float | None = None, compile: bool = False, y_range: tuple[float, float] | None = None,
    learner_cls: type[TrainingLearner] = TrainingLearner, **learner_kwargs: Any,
) -> TrainingLearner:
    """A Learner for transfer learning: pretrained ``arch`` body + a new head sized to ``dls.c``.

    ``arch``: a timm name (``"resnet34"``), a torchvision builder or an ``nn.Module`` body;
    ``weights``: a local ``.safetensors``/``.pth`` file for the body (works offline), its keys renamed by
    ``weights_map`` where it comes from another library (see ``create_body``). Inputs are normalized
    with ``mean``/``std`` if given, else the statistics stored with ``weights``, else the backbone's
    pretrained config (``normalize=False``: not at all); a ``Normalize`` already in ``dls.batch_tfms``
    is kept and used instead. ``layer_decay`` (e.g. 0.75) gives one group per body layer with
    timm-style decayed LRs. ``y_range=(low, high)`` squashes the outputs into that range
    (``SigmoidRange``, for regression). The model starts frozen (head only) when pretrained. Every
    other keyword (``metrics``, ``loss_func``, ``opt_func``, ``lr``, ``cbs``, ``path``, ``model_dir``,
    ``wd``, ``train_bn``, ``moms``, ``device``, ``amp``) goes to ``learner_cls`` unchanged.

    Example:
        >>> learn = vision_learner(dls, "resnet34", metrics=error_rate)
        >>> learn.fine_tune(1)
    """
    n_out = n_out if n_out is not None else getattr(dls, "c", None)
    if not isinstance(n_out, int) or n_out < 1:
        raise ValueError(f"n_out must be a positive int (default: dls.c), got {n_out!r}")
    head = dict(concat_pool=concat_pool, lin_ftrs=lin_ftrs, ps=ps, first_bn=first_bn, bn_final=bn_final,
                y_range=y_range)
    cfg = None if custom_head is not None else config_for(arch, n_out, **head)
    if cfg is not None:  # the path load_learner takes too
        model, stats = build_model_and_stats(cfg, pretrained=pretrained, weights=weights, weights_map=weights_map)
        cfg = replace(cfg, input_size=stats.get("input_size"))
    else:  # an nn.Module body or a custom head: no config describes it (and it cannot be exported)
        model, stats = build_custom_model(arch, n_out, custom_head, pretrained=pretrained, weights=weights,
                                          weights_map=weights_map, **head)
    spec = Preprocess.from_dls(dls)
    if normalize:
        spec = spec.with_stats(*decide_stats(stats, weights, mean, std, dls))
    lr_mults = None
    if layer_decay is not None:
        if splitter is not None:
            raise ValueError("pass either splitter or layer_decay, not both")
        splitter = layerwise_splitter
        lr_mults = schedule.layer_decay_mults(len(layerwise_splitter(model)), layer_decay)
    learn = learner_cls(dls, model, splitter=splitter or default_splitter, model_config=cfg, lr_mults=lr_mults,
                        preprocess=spec, **learner_kwargs)
    if (pretrained or weights is not None) and learn.n_groups > 1:
        learn.freeze()
    if compile:
        learn.model = torch.compile(learn.model)
    return learn


cnn_learner = vision_learner
