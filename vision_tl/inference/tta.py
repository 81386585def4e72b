"""Test-time augmentation: average the predictions of several augmented passes (fastai's ``learn.tta``)."""

from __future__ import annotations

from typing import Any

import torch

from ..data.batch_tfms import has_normalize
from ..data.tfmd_dl import TfmdDL, inorder_dl
from ..models.predict_step import predict_step


def tta(
    learn: Any, dl: Any = None, n: int = 4, beta: float | None = 0.25, bs: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Test-time augmentation on the validation set (or ``dl``'s dataset), like fastai's ``tta``.

    Averages the probabilities of ``n`` passes with the training transforms (item and batch), then
    blends them with one plain pass: ``(1 - beta) * augmented + beta * plain``. With ``beta=None``
    the augmented average alone is returned. Every pass goes through ``predict_step`` with the
    learner's preprocessing spec. Returns ``(probs, targets)`` in dataset order; ``targets`` is None
    for unlabelled items (a ``dls.test_dl(items)``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if beta is not None and not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1] or None, got {beta}")
    dl = dl if dl is not None else learn.dls.valid
    model, spec = learn.raw_model, learn.preprocess
    device = next(model.parameters()).device

    def one_pass(loader: TfmdDL) -> torch.Tensor:
        norm = not has_normalize(loader.batch_tfms)
        return torch.cat([predict_step(model, b[0], spec, normalize=norm).cpu() for b in loader])

    aug_dl = inorder_dl(dl, train=True, bs=bs, device=device)
    aug = torch.stack([one_pass(aug_dl) for _ in range(n)]).mean(0)
    targets = _targets(dl.dataset)
    if beta is None:
        return aug, targets
    return torch.lerp(aug, one_pass(inorder_dl(dl, bs=bs, device=device)), beta), targets


def _targets(ds: Any) -> torch.Tensor | None:
    """All of ``ds``'s targets in order: int64 ``(n,)``, one-hot float32 ``(n, c)`` (multi-label) or None."""
    labels = getattr(ds, "labels", None)
    if labels is None:
        return None
    if getattr(ds, "multi_label", False):
        return torch.stack([torch.from_numpy(ds.target(i)) for i in range(len(labels))])
    return torch.as_tensor(list(labels), dtype=torch.long)
