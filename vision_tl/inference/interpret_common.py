"""What both interpretations (single- and multi-label) and ``show_results`` share: the loader to
predict, an item's image, the report's lines and a grid of titled images.

The bottom of the interpretation stack: ``interpret_multi.py`` and ``interpret.py`` import it, it
imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.tfmd_dl import inorder_dl

__all__ = ["image_grid", "item_image", "ordered_dl", "report_lines"]


def ordered_dl(learn: Any, ds_idx: int) -> Any:
    """The validation loader, or (``ds_idx=0``) the training set in order with the valid-time transforms."""
    if ds_idx not in (0, 1):
        raise ValueError(f"ds_idx must be 0 (train) or 1 (valid), got {ds_idx!r}")
    if not hasattr(learn, "dls") or not hasattr(learn, "get_preds"):
        raise TypeError(
            f"interpretation needs a training Learner (its DataLoaders hold the labelled validation set), got "
            f"{type(learn).__name__}; for a model from load_learner, run `vision-tl evaluate MODEL DATA` or make "
            "a Learner on labelled DataLoaders"
        )
    return inorder_dl(learn.dls.train) if ds_idx == 0 else learn.dls.valid


def item_image(dataset: Any, items: Sequence[Any] | None, i: int) -> np.ndarray:
    """Item ``i`` as an image to show: from the dataset (its validation transforms), else decoded from its file."""
    if dataset is not None:
        return np.asarray(dataset[i][0])
    if items is None:
        raise ValueError("no images to show: pass items= or dataset= (from_learner does)")
    from .predict import to_rgb_array

    return to_rgb_array(items[i])


def report_lines(rows: Sequence[dict], width: int) -> list[str]:
    """The header and one line per class (precision, recall, F1, support) of a classification report."""
    lines = [f"{'':>{width}}  precision  recall  f1-score  support"]
    for r in rows:
        lines.append(f"{r['class']:>{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:8.3f}"
                     f"  {r['support']:7d}")
    return lines


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], ncols: int | None = None,
          colors: Sequence[str] | None = None, suptitle: str | None = None, nrows: int | None = None,
          figsize: tuple[float, float] | None = None) -> Any:
    """A figure of images in a grid with one title each."""
    import matplotlib.pyplot as plt

    n = max(1, len(images))
    ncols = ncols or (-(-n // nrows) if nrows else min(n, 3))
    nrows = max(nrows or 0, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (3 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (ax, img, title) in enumerate(zip(axes.flat, images, titles)):
        ax.imshow(img)
        ax.set_title(title, fontsize=9, color=colors[k] if colors else "black")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
