"""Drawing one batch (``DataLoaders.show_batch``) and the step-by-step pipeline report (``.summary``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .batch_tfms import BatchTransform, Normalize, apply_batch_tfms
from .datasets import collate_uint8
from .images import load_rgb
from .item_tfms import apply_item_tfms, draft_size_for

if TYPE_CHECKING:
    from .dataloaders import DataLoaders
    from .tfmd_dl import TfmdDL

__all__ = ["decoded_for_display", "draw_batch", "pipeline_summary", "title_of"]


def decoded_for_display(xb: torch.Tensor, tfms: Sequence[BatchTransform]) -> torch.Tensor:
    """Undo ``Normalize`` for display; clip to [0, 1]."""
    for t in tfms:
        if isinstance(t, Normalize):
            xb = t.decode(xb)
    return xb.clamp(0, 1)


def title_of(ds: object, y: object) -> str | None:
    """A target as a title: the class, the classes joined with ';' (multi-label), or the number(s)."""
    values = np.asarray(y)
    if getattr(ds, "n_out", None) is not None:  # regression
        return ", ".join(f"{v:.4g}" for v in values.reshape(-1))
    vocab = getattr(ds, "vocab", [])
    if values.ndim == 1:  # one-hot multi-label target (all -1 when unlabelled)
        if (values < 0).any():
            return None
        return ";".join(str(vocab[k]) for k in np.flatnonzero(values > 0.5)) or "-"
    k = int(values)
    return str(vocab[k]) if 0 <= k < len(vocab) else None


def draw_batch(dl: TfmdDL, max_n: int = 9, nrows: int | None = None, ncols: int | None = None,
               figsize: tuple[float, float] | None = None, unique: bool = False, **kwargs):
    """A matplotlib figure of ``dl``'s first batch (decoded for display), titled with the labels.

    ``unique=True``: the first item, repeated under different random transforms. ``kwargs`` go to
    ``plt.subplots`` (e.g. ``dpi``).
    """
    import matplotlib.pyplot as plt

    batch = dl.one_batch(unique=unique)
    xb = decoded_for_display(batch[0], dl.batch_tfms)[:max_n].float().cpu()
    yb = list(batch[1][: len(xb)].cpu().numpy()) if len(batch) > 1 else [None] * len(xb)
    n = len(xb)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = nrows or math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (3 * ncols, 3 * nrows), squeeze=False, **kwargs)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(xb[k].permute(1, 2, 0).numpy())
            title = title_of(dl.dataset, yb[k]) if yb[k] is not None else None
            if title:
                ax.set_title(title)
    fig.tight_layout()
    return fig


def pipeline_summary(dls: DataLoaders) -> str:
    """Walk the first training item through each step; the report ends with OK or the failing step."""
    lines = [f"Items: {len(dls.train_ds)} train, {len(dls.valid_ds)} valid; {dls.c} classes: {dls.vocab[:20]}"]
    ds, step = dls.train_ds, "picking an item"
    try:
        if len(ds) == 0:
            raise ValueError("the training set is empty")
        item, label = ds.items[0], title_of(ds, ds.target(0)) if ds.labels else None
        lines.append(f"Item 0: {item!s} -> label {label!r}")
        step = "decoding"
        draft = draft_size_for(ds.item_tfms)
        img = load_rgb(item, draft_size=draft)
        lines.append(f"Decoded (draft size {draft}): uint8 HWC {img.shape}")
        rng = np.random.default_rng(0)
        for t in ds.item_tfms:
            step = f"item transform {t!r}"
            img = apply_item_tfms(img, [t], train=True, rng=rng)
            lines.append(f"After {t!r}: {img.dtype} {img.shape}")
        step = "collating a batch"
        n = min(dls.bs, len(ds), 4)
        xb, yb = collate_uint8([ds[(i, (0, 0, i))] for i in range(n)])
        lines.append(f"Collated {n} items: {xb.dtype} {tuple(xb.shape)} (NCHW), labels {yb.tolist()}")
        step = f"moving to {dls.device}"
        x = xb.to(dls.device)
        x = apply_batch_tfms(x, [], train=True)
        lines.append(f"On {dls.device} as float: {tuple(x.shape)}, range [{x.min():.3f}, {x.max():.3f}]")
        for t in sorted(dls.batch_tfms, key=lambda t: getattr(t, "order", 50)):
            step = f"batch transform {t!r}"
            x = t(x, True, generator=torch.Generator().manual_seed(0))
            lines.append(f"After {type(t).__name__}: {tuple(x.shape)}, range [{x.min():.3f}, {x.max():.3f}]")
        lines.append("OK: the pipeline runs end to end.")
    except Exception as e:  # noqa: BLE001 - the point is to report where it breaks
        lines.append(f"FAILED at {step}: {type(e).__name__}: {e}")
    return "\n".join(lines)
