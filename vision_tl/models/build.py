"""``ModelConfig`` (plain data saved with the weights) and the one builder of body + head.

The config is everything needed to rebuild the network without code: an exported model is this
config (as JSON) plus a state dict. ``build_model_and_stats(cfg, ...)`` is the one function that
turns a config into a model: ``vision_learner`` calls it for training (with the pretrained weights),
``load_learner`` through ``build_model(cfg, pretrained=False)`` before loading the exported weights,
so the two cannot drift apart. Only a model no config can describe (an ``nn.Module`` body or a
custom head, which cannot be exported) is put together by ``build_custom_model``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from .backbones import create_body
from .heads import create_head

_SOURCES = ("timm", "torchvision")
_LEGACY_KEYS = ("mean", "std")


@dataclass
class ModelConfig:
    """How to rebuild a body + head model: the arch and where it comes from, and the head's shape."""

    arch: str
    source: str = "timm"
    n_out: int = 2
    concat_pool: bool = True
    lin_ftrs: list[int] | None = None
    ps: float = 0.5
    bn_final: bool = False
    first_bn: bool = True
    input_size: tuple[int, int] | None = None
    y_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError(f"ModelConfig.arch must be a non-empty string, got {self.arch!r}")
        if self.source not in _SOURCES:
            raise ValueError(f"ModelConfig.source must be one of {_SOURCES}, got {self.source!r}")
        if not isinstance(self.n_out, int) or isinstance(self.n_out, bool) or self.n_out < 1:
            raise ValueError(f"ModelConfig.n_out must be a positive int, got {self.n_out!r}")
        if not 0 <= float(self.ps) < 1:
            raise ValueError(f"ModelConfig.ps must be in [0, 1), got {self.ps!r}")
        if self.lin_ftrs is not None:
            self.lin_ftrs = [int(n) for n in self.lin_ftrs]
        if self.input_size is not None:
            if len(self.input_size) != 2:
                raise ValueError(f"ModelConfig.input_size must be (h, w), got {self.input_size!r}")
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.y_range is not None:
            if len(self.y_range) != 2 or not float(self.y_range[0]) < float(self.y_range[1]):
                raise ValueError(f"ModelConfig.y_range must be (low, high) with low < high, got {self.y_range!r}")
            self.y_range = (float(self.y_range[0]), float(self.y_range[1]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists; ``y_range`` only when set, so files stay readable by
        versions that predate it)."""
        d = asdict(self)
        if d["y_range"] is None:
            del d["y_range"]
        for k in ("input_size", "y_range"):
            if d.get(k) is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Rebuild from ``to_dict()`` output; unknown keys are an error that names them.

        ``mean``/``std``, which configs written before the preprocessing spec carried (and nothing read),
        are dropped: normalization lives in ``Preprocess``.
        """
        d = {k: v for k, v in d.items() if k not in _LEGACY_KEYS}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"ModelConfig.from_dict: unknown keys {unknown} (known: {sorted(known)})")
        for k in ("input_size", "y_range"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


def _resolve_arch(cfg: ModelConfig) -> Any:
    if cfg.source == "timm":
        return cfg.arch
    import torchvision

    try:
        return torchvision.models.get_model_builder(cfg.arch)
    except ValueError as e:
        raise ValueError(f"ModelConfig.arch={cfg.arch!r} is not a torchvision model name") from e


def build_model_and_stats(
    cfg: ModelConfig, pretrained: bool = False, weights: str | Path | None = None, weights_map: Any = None,
) -> tuple[nn.Sequential, dict]:
    """``nn.Sequential(body, head)`` as described by ``cfg``, and the body's pretrained statistics.

    ``pretrained``/``weights``/``weights_map`` load the body's weights (see ``create_body``); the
    statistics are ``{"mean", "std", "input_size"}`` from the backbone's pretrained config.
    """
    body, nf, stats = create_body(_resolve_arch(cfg), pretrained=pretrained, weights=weights, weights_map=weights_map)
    return nn.Sequential(body, _head(nf, cfg)), stats


def build_model(cfg: ModelConfig, pretrained: bool = False, weights: str | Path | None = None) -> nn.Sequential:
    """``nn.Sequential(body, head)`` as described by ``cfg`` (``pretrained``/``weights`` for the body)."""
    return build_model_and_stats(cfg, pretrained, weights)[0]


def build_custom_model(
    arch: Any, n_out: int, custom_head: nn.Module | None = None, pretrained: bool = True,
    weights: str | Path | None = None, weights_map: Any = None, **head: Any,
) -> tuple[nn.Sequential, dict]:
    """Body + head for what no ``ModelConfig`` describes: an ``nn.Module`` body or a ``custom_head``.

    ``head`` holds ``create_head``'s keywords (used when ``custom_head`` is None). Returns the model
    and the body's statistics, as ``build_model_and_stats``.
    """
    body, nf, stats = create_body(arch, pretrained=pretrained, weights=weights, weights_map=weights_map)
    return nn.Sequential(body, custom_head if custom_head is not None else create_head(nf, n_out, **head)), stats


def _head(nf: int, cfg: ModelConfig) -> nn.Sequential:
    return create_head(nf, cfg.n_out, lin_ftrs=cfg.lin_ftrs, ps=cfg.ps, concat_pool=cfg.concat_pool,
                       first_bn=cfg.first_bn, bn_final=cfg.bn_final, y_range=cfg.y_range)


def config_for(
    arch: Any, n_out: int, stats: dict | None = None, concat_pool: bool = True, lin_ftrs: list[int] | None = None,
    ps: float = 0.5, bn_final: bool = False, first_bn: bool = True, y_range: tuple[float, float] | None = None,
) -> ModelConfig | None:
    """The ``ModelConfig`` for a timm name, timm architecture symbol or torchvision builder; ``None``
    for an ``nn.Module`` body. ``stats`` (the body's, for ``input_size``) may be filled in later."""
    if isinstance(arch, str):
        name, source = arch, "timm"
    elif isinstance(getattr(arch, "timm_name", None), str):  # an architecture symbol such as xresnet50
        name, source = arch.timm_name, "timm"
    elif callable(arch) and not isinstance(arch, nn.Module) and getattr(arch, "__module__", "").startswith("torchvision"):
        name, source = arch.__name__, "torchvision"
    else:
        return None
    return ModelConfig(
        arch=name, source=source, n_out=n_out, concat_pool=concat_pool, lin_ftrs=lin_ftrs, ps=ps,
        bn_final=bn_final, first_bn=first_bn, input_size=(stats or {}).get("input_size"),
        y_range=y_range,
    )
