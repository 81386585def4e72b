"""Grad-CAM: where in the image the model found the evidence for a class.

``grad_cam(predictor, img)`` runs the prediction step's own preprocessing (decode, valid item
transforms, normalization), takes the activations of ``layer`` (default: the body, ``model[0]``,
whose output is NCHW features for every timm/torchvision body) and the gradient of the class score
(the class's log-odds against the others) with respect to them, weighs each channel by its mean gradient, keeps the positive part and scales
it to ``[0, 1]`` at the preprocessed image's size (Selvaraju et al., 2017). The same code serves an
in-memory learner (``learn.grad_cam``/``learn.show_cam``) and a loaded ``.vtl`` (``predictor.show_cam``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.predict_step import activate, eval_mode, prepare_batch

if TYPE_CHECKING:
    from .predict import Item, Predictor

__all__ = ["grad_cam", "show_cam"]


def _default_layer(model: nn.Module) -> nn.Module:
    if isinstance(model, nn.Sequential) and len(model) == 2:
        return model[0]
    raise ValueError(
        f"grad_cam: cannot pick a layer in a {type(model).__name__} (not a Sequential(body, head)); "
        "pass layer=<a module whose output is NCHW features>"
    )


def _class_index(predictor: Predictor, target: int | str | None, probs: torch.Tensor) -> int:
    if target is None:
        return int(probs.argmax())
    if isinstance(target, str):
        if target not in predictor.vocab:
            raise ValueError(f"grad_cam: target {target!r} is not a class (vocab: {predictor.vocab[:20]})")
        return predictor.vocab.index(target)
    if not 0 <= int(target) < predictor.c:
        raise ValueError(f"grad_cam: target must be in [0, {predictor.c}), got {target!r}")
    return int(target)


def _score(logits: torch.Tensor, idx: int) -> torch.Tensor:
    """The log-odds of class ``idx`` against the others: ``z_idx - logsumexp(z_other)``.

    Unlike the raw logit it ignores evidence shared by all classes (with two classes the network may
    put everything in one logit), and unlike the probability it does not saturate at p = 1.
    """
    if logits.numel() == 1:
        return logits.reshape(())
    others = torch.cat([logits[:idx], logits[idx + 1:]])
    return logits[idx] - torch.logsumexp(others, 0)


def grad_cam_with_image(
    predictor: Predictor, item: Item, target: int | str | None = None, layer: nn.Module | None = None
) -> tuple[np.ndarray, np.ndarray, int, torch.Tensor]:
    """``(heatmap (H, W) float32 in [0, 1], the preprocessed uint8 image (H, W, 3), class index, probs)``."""
    model = predictor.model
    layer = layer if layer is not None else _default_layer(model)
    img = np.ascontiguousarray(predictor.preprocess(item))
    xb = prepare_batch(torch.from_numpy(img).permute(2, 0, 1)[None], predictor.spec, predictor.device).float()
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        with eval_mode(model), torch.enable_grad():
            out = model(xb.requires_grad_(True))  # grads reach the activations even in a frozen body
            probs = activate(out.detach(), predictor.spec.activation)[0].cpu()
            idx = _class_index(predictor, target, probs)
            if not acts or not isinstance(acts[-1], torch.Tensor) or acts[-1].ndim != 4:
                got = tuple(acts[-1].shape) if acts and isinstance(acts[-1], torch.Tensor) else None
                raise ValueError(f"grad_cam: layer {type(layer).__name__} must output NCHW features, got shape {got}")
            act = acts[-1]
            (grad,) = torch.autograd.grad(_score(out[0].float(), idx), act)
    finally:
        handle.remove()
    weights = grad[0].float().mean(dim=(1, 2), keepdim=True)
    cam = F.relu((weights * act[0].detach().float()).sum(0))
    cam = F.interpolate(cam[None, None], size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    return cam.cpu().numpy().astype(np.float32), img, idx, probs


def grad_cam(predictor: Predictor, item: Item, target: int | str | None = None,
             layer: nn.Module | None = None) -> np.ndarray:
    """The Grad-CAM heatmap ``(H, W)``, float32 in ``[0, 1]``, for ``item`` at the model's input size.

    Args:
        predictor: a ``Predictor`` (``learn.grad_cam`` and ``load_learner(...).grad_cam`` pass theirs).
        item: a path, bytes, PIL image or uint8 array, as for ``predict``.
        target: class index or label to explain; default the predicted class.
        layer: the module whose activations are weighed; default the body (``model[0]``). For a finer
            map pass an earlier stage, e.g. ``learn.model[0][-2]``.
    """
    return grad_cam_with_image(predictor, item, target, layer)[0]


def show_cam(predictor: Predictor, item: Item, target: int | str | None = None, layer: nn.Module | None = None,
             alpha: float = 0.5, cmap: str = "magma", ax: Any = None,
             figsize: tuple[float, float] | None = None) -> Any:
    """Draw the image with its Grad-CAM heatmap on top, titled with the class and its probability; returns the axes."""
    import matplotlib.pyplot as plt

    cam, img, idx, probs = grad_cam_with_image(predictor, item, target, layer)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(img)
    ax.imshow(cam, alpha=alpha, cmap=cmap, extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
    ax.set_title(f"{predictor.vocab[idx]} ({float(probs[idx]):.2f})")
    ax.axis("off")
    return ax
