"""Architecture symbols under the names fastai code uses: ``vision_learner(dls, resnet34)``.

- ``resnet18/34/50/101/152`` are torchvision's builders themselves, as in fastai: torchvision's
  architecture, and with ``pretrained=True`` torchvision's ImageNet weights (``DEFAULT``), found in
  the torch hub cache or downloaded. (The *string* ``"resnet34"`` stays timm's variant.)
- ``xresnet18/34/50/101/152`` (fastai's "bag of tricks" ResNets: deep 3-conv stem, average-pool
  downsampling in the shortcut) map to timm's ResNet-D models, the same design:
  ``xresnet50`` -> ``timm "resnet50d"``, and so on. Like fastai's they are also callables that build
  a whole classifier: ``Learner(dls, xresnet50(n_out=dls.c))``.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models import resnet18, resnet34, resnet50, resnet101, resnet152

__all__ = [
    "TimmArch", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "xresnet18", "xresnet34", "xresnet50", "xresnet101", "xresnet152",
]


class TimmArch:
    """A named timm architecture: pass it to ``vision_learner``/``create_body``, or call it for a full model.

    Args:
        name: the fastai-style name users write (``"xresnet50"``).
        timm_name: the timm model it builds (``"resnet50d"``); saved in the exported ``ModelConfig``.
    """

    def __init__(self, name: str, timm_name: str) -> None:
        self.__name__, self.timm_name = name, timm_name

    def __call__(self, pretrained: bool = False, n_out: int = 1000, c_in: int = 3, **kwargs: Any) -> nn.Module:
        """The whole timm classifier with ``n_out`` outputs and ``c_in`` input channels (fastai's keywords)."""
        import timm

        if pretrained:
            from .hub import find_pretrained

            available, cached, why = find_pretrained(self.timm_name)
            if not available:
                raise RuntimeError(f"no pretrained weights for {self.__name__} ({self.timm_name}): {why}")
            if cached is not None:
                kwargs.setdefault("pretrained_cfg_overlay", {"file": str(cached)})
        return timm.create_model(self.timm_name, pretrained=pretrained, num_classes=n_out, in_chans=c_in, **kwargs)

    def __repr__(self) -> str:
        return f"{self.__name__} (timm {self.timm_name!r})"


xresnet18 = TimmArch("xresnet18", "resnet18d")
xresnet34 = TimmArch("xresnet34", "resnet34d")
xresnet50 = TimmArch("xresnet50", "resnet50d")
xresnet101 = TimmArch("xresnet101", "resnet101d")
xresnet152 = TimmArch("xresnet152", "resnet152d")
