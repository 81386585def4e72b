"""The figures trackers log after a fit: the confusion matrix and a grid of validation predictions.

Drawn with matplotlib's object API (``Figure``, no pyplot): no GUI backend, nothing global.
"""

from __future__ import annotations

from typing import Any

import torch


def confusion_matrix(preds: torch.Tensor, targs: torch.Tensor, n: int) -> torch.Tensor:
    """``cm[actual, predicted]`` counts from class scores ``preds`` (N, C) and class indices ``targs`` (N,)."""
    idx = targs.long().cpu() * n + preds.argmax(1).long().cpu()
    return torch.bincount(idx, minlength=n * n).reshape(n, n)


def confusion_figure(learn: Any) -> Any:
    """The confusion matrix of the last validation pass (single-label classification only), or None."""
    g, vocab = learn.gather_preds, [str(v) for v in getattr(learn.dls, "vocab", []) or []]
    if g.preds is None or g.targs is None or g.targs.ndim != 1 or not vocab or g.preds.shape[-1] != len(vocab):
        return None
    from matplotlib.figure import Figure

    cm = confusion_matrix(g.preds, g.targs, len(vocab))
    size = max(3.0, 0.45 * len(vocab) + 1.5)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ax.imshow(cm.numpy(), cmap="Blues")
    ax.set_xticks(range(len(vocab)), vocab, rotation=90)
    ax.set_yticks(range(len(vocab)), vocab)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    if len(vocab) <= 20:
        for i in range(len(vocab)):
            for j in range(len(vocab)):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def predictions_figure(learn: Any, n: int = 16) -> Any:
    """A grid of up to ``n`` validation images titled ``actual / predicted``, or None without images.

    The first validation batch is predicted again with the plain model (``raw_model``, never the DDP
    wrapper, so no process waits on another).
    """
    from ...data.batch_tfms import has_normalize
    from ...models.predict_step import prepare_batch

    dl, vocab = learn.dls.valid, [str(v) for v in getattr(learn.dls, "vocab", []) or []]
    try:
        b = next(iter(dl))
    except StopIteration:
        return None
    x, y = b[0][:n], (b[1][:n] if len(b) > 1 else None)
    model = learn.raw_model
    was_training = model.training
    model.eval()
    with torch.no_grad():
        xin = prepare_batch(x, learn.preprocess, normalize=not has_normalize(getattr(dl, "batch_tfms", None)))
        out = model(xin).float()
    model.train(was_training)
    imgs = x.float().cpu()
    if x.dtype == torch.uint8:
        imgs = imgs / 255
    from matplotlib.figure import Figure

    cols = min(4, len(imgs))
    rows = (len(imgs) + cols - 1) // cols
    fig = Figure(figsize=(2.2 * cols, 2.4 * rows))
    for i, img in enumerate(imgs):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_axis_off()
        ax.set_title(_title(out[i], None if y is None else y[i], vocab), fontsize=8)
    fig.tight_layout()
    return fig


def _title(out: torch.Tensor, y: Any, vocab: list[str]) -> str:
    if out.ndim != 1 or not vocab or out.shape[0] != len(vocab):
        return f"{float(out.flatten()[0]):.3g}"
    pred = vocab[int(out.argmax())]
    if y is None or y.ndim != 0:
        return pred
    return f"{vocab[int(y)]} / {pred}"
