"""Interpret a classifier's mistakes: confusion matrix, most confused pairs, top losses, a report.

``ClassificationInterpretation`` works from plain predictions (probabilities, targets, the vocab and
optionally the images), so it serves an in-memory learner (``from_learner``) and the CLI's
``evaluate`` on a loaded model alike. Plots return a matplotlib ``Figure`` and never call ``show``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from .interpret_common import image_grid, item_image, ordered_dl, report_lines
from .interpret_multi import MultiLabelInterpretation

_SCORES = {"precision": metrics.Precision, "recall": metrics.Recall, "f1": metrics.F1Score}
__all__ = ["ClassificationInterpretation", "item_image", "report_lines", "show_results"]


class ClassificationInterpretation:
    """Predictions of a classifier over a labelled set, and views of where it goes wrong.

    Args:
        vocab: class names.
        probs: ``(n, c)`` probabilities.
        targets: ``(n,)`` true class indices.
        losses: ``(n,)`` per-item losses (default: cross-entropy of ``probs``).
        items: the inputs (paths or anything ``Predictor`` accepts), to show top losses.
        dataset: alternatively, a dataset whose ``ds[i][0]`` is the (valid-transformed) uint8 HWC image.
    """

    def __init__(
        self,
        vocab: Sequence[str],
        probs: torch.Tensor,
        targets: torch.Tensor,
        losses: torch.Tensor | None = None,
        items: Sequence[Any] | None = None,
        dataset: Any = None,
    ) -> None:
        self.vocab = [str(v) for v in vocab]
        self.probs = torch.as_tensor(probs).detach().float().cpu()
        self.targets = torch.as_tensor(targets).detach().long().cpu()
        if self.probs.ndim != 2 or self.probs.shape[1] != len(self.vocab):
            raise ValueError(f"probs must be (n, {len(self.vocab)}) for a vocab of {len(self.vocab)}, "
                             f"got {tuple(self.probs.shape)}")
        if self.targets.shape != (len(self.probs),):
            raise ValueError(f"targets must be ({len(self.probs)},), got {tuple(self.targets.shape)}")
        if losses is None:
            losses = F.nll_loss(self.probs.clamp_min(1e-12).log(), self.targets, reduction="none")
        self.losses = torch.as_tensor(losses).detach().float().cpu()
        self.items, self.dataset = items, dataset
        self.preds = self.probs.argmax(1)

    @classmethod
    def from_learner(cls, learn: Any, ds_idx: int = 1, dl: Any = None) -> Any:
        """Predict the validation set (``ds_idx=0``: the training set, in order, unaugmented; or ``dl``)
        with ``learn`` and keep per-item losses. A multi-label learner gets a ``MultiLabelInterpretation``
        (a 2x2 confusion matrix per class)."""
        if getattr(getattr(learn, "dls", None), "multi_label", False):
            return MultiLabelInterpretation.from_learner(learn, ds_idx, dl)
        dl = dl if dl is not None else ordered_dl(learn, ds_idx)
        probs, targets, losses = learn.get_preds(dl=dl, with_loss=True)
        ds = dl.dataset
        return cls(learn.dls.vocab, probs, targets, losses, items=getattr(ds, "items", None), dataset=ds)

    def confusion_matrix(self) -> np.ndarray:
        """``(c, c)`` counts: row = actual class, column = predicted class."""
        return metrics.confusion_matrix(self.probs, self.targets, len(self.vocab)).numpy()

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """``(actual, predicted, count)`` for off-diagonal cells with ``count >= min_val``, largest first."""
        cm = self.confusion_matrix()
        pairs = [(self.vocab[i], self.vocab[j], int(cm[i, j]))
                 for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] >= min_val]
        return sorted(pairs, key=lambda p: -p[2])

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(losses, indices)`` of the ``k`` items with the largest (or smallest) loss."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def classification_report(self) -> list[dict[str, Any]]:
        """Per-class precision, recall, F1 and support (the rows of ``print_classification_report``)."""
        cm = torch.as_tensor(self.confusion_matrix()).double()
        tp = cm.diag()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
        scores = {k: m().per_class(tp, fp, fn).tolist() for k, m in _SCORES.items()}
        return [{"class": name, **{k: v[i] for k, v in scores.items()}, "support": int(tp[i] + fn[i])}
                for i, name in enumerate(self.vocab)]

    def macro_avg(self) -> dict[str, float]:
        """Macro precision, recall and F1 over the classes that have images here (support > 0): a class
        with no images has no recall to measure and would only drag the average down (they are named by
        ``classes_without_images``). When every class is present these are the metrics' own values."""
        kept = [r for r in self.classification_report() if r["support"] > 0]
        return {k: float(np.mean([r[k] for r in kept])) if kept else 0.0 for k in _SCORES}

    def classes_without_images(self) -> list[str]:
        """The classes with no image in this set, left out of ``macro_avg``."""
        return [r["class"] for r in self.classification_report() if r["support"] == 0]

    def print_classification_report(self) -> str:
        """Print (and return) per-class precision/recall/F1, accuracy, and macro averages."""
        rows = self.classification_report()
        width = max(12, *(len(r["class"]) for r in rows))
        lines = report_lines(rows, width)
        n = len(self.targets)
        acc = float((self.preds == self.targets).float().mean()) if n else 0.0
        macro = self.macro_avg()
        lines.append(f"{'accuracy':>{width}}  {'':9}  {'':6}  {acc:8.3f}  {n:7d}")
        left_out = self.classes_without_images()
        note = (f"  (over the {len(rows) - len(left_out)} classes with images; left out: "
                f"{', '.join(left_out[:10])}{', ...' if len(left_out) > 10 else ''})") if left_out else ""
        lines.append(f"{'macro avg':>{width}}  {macro['precision']:9.3f}  {macro['recall']:6.3f}"
                     f"  {macro['f1']:8.3f}  {n:7d}{note}")
        text = "\n".join(lines)
        print(text)
        return text

    def plot_confusion_matrix(self, normalize: bool = False, cmap: str = "Blues", figsize: tuple | None = None,
                              dpi: float | None = None, title: str = "Confusion matrix", norm_dec: int = 2,
                              plot_txt: bool = True, return_fig: bool = False) -> Any:
        """Draw the confusion matrix (rows actual, columns predicted); fastai's keywords. Returns None, as
        fastai does (a notebook shows the plot once), or the ``Figure`` with ``return_fig=True``."""
        import matplotlib.pyplot as plt

        cm = self.confusion_matrix().astype(float)
        if normalize:
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        c = len(self.vocab)
        side = figsize or (max(4.0, 0.5 * c + 2), max(4.0, 0.5 * c + 2))
        fig, ax = plt.subplots(figsize=side, dpi=dpi)
        ax.imshow(cm, interpolation="nearest", cmap=cmap)
        ax.set(xticks=range(c), yticks=range(c), xlabel="Predicted", ylabel="Actual", title=title)
        ax.set_xticklabels(self.vocab, rotation=90)
        ax.set_yticklabels(self.vocab)
        if plot_txt and c <= 30:
            thresh = cm.max() / 2 if cm.size else 0
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, f"{cm[i, j]:.{norm_dec}f}" if normalize else f"{int(cm[i, j])}", ha="center", va="center",
                            color="white" if cm[i, j] > thresh else "black", fontsize=8)
        fig.tight_layout()
        return fig if return_fig else None

    def _image(self, i: int) -> np.ndarray:
        return item_image(self.dataset, self.items, i)

    def plot_top_losses(self, k: int = 9, largest: bool = True, ncols: int | None = None, nrows: int | None = None,
                        figsize: tuple[float, float] | None = None, return_fig: bool = False) -> Any:
        """The ``k`` worst-predicted images titled ``predicted / actual / loss / probability of actual``
        (None, or the ``Figure`` with ``return_fig=True``)."""
        losses, idxs = self.top_losses(k, largest)
        fig = image_grid(
            [self._image(int(i)) for i in idxs],
            [f"{self.vocab[int(self.preds[i])]}/{self.vocab[int(self.targets[i])]}\n"
             f"{float(loss):.2f} / {float(self.probs[i, self.targets[i]]):.2f}" for loss, i in zip(losses, idxs)],
            ncols, suptitle="predicted/actual  loss/probability", nrows=nrows, figsize=figsize,
        )
        return fig if return_fig else None


def show_results(learn: Any, ds_idx: int = 1, dl: Any = None, max_n: int = 9, ncols: int | None = None,
                 nrows: int | None = None, figsize: tuple[float, float] | None = None, return_fig: bool = False) -> Any:
    """``learn.show_results``: validation images titled ``actual / predicted`` (green right, red wrong).
    Returns None (a notebook shows the grid once), or the ``Figure`` with ``return_fig=True``."""
    ds = (dl if dl is not None else ordered_dl(learn, ds_idx)).dataset
    n = min(max_n, len(ds))
    if n == 0:
        raise ValueError("show_results: the dataset is empty")
    from .predict import Predictor

    pred = Predictor.from_learner(learn)
    images = [np.asarray(ds[i][0]) for i in range(n)]
    with torch.inference_mode():
        probs = pred.forward_uint8(torch.stack([torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)
                                                for im in images]))
    vocab = learn.dls.vocab
    if pred.multi_label:  # titles list every label: actual, then predicted
        actual_sets = [_label_set(ds, vocab, i) for i in range(n)]
        predicted_sets = [";".join(labs) or "-" for labs in pred.decode(probs)]
        titles = [f"{a}\n{p}" for a, p in zip(actual_sets, predicted_sets)]
        colors = ["green" if a == p else "red" for a, p in zip(actual_sets, predicted_sets)]
        fig = image_grid(images, titles, ncols, colors=colors, suptitle="actual / predicted")
        return fig if return_fig else None
    actual = [int(ds.labels[i]) if getattr(ds, "labels", None) is not None else -1 for i in range(n)]
    predicted = probs.argmax(1).tolist()
    titles = [f"{vocab[a] if a >= 0 else '?'}\n{vocab[p]}" for a, p in zip(actual, predicted)]
    colors = ["green" if a == p else "red" for a, p in zip(actual, predicted)]
    fig = image_grid(images, titles, ncols, colors=colors, suptitle="actual / predicted", nrows=nrows, figsize=figsize)
    return fig if return_fig else None


def _label_set(ds: Any, vocab: Sequence[str], i: int) -> str:
    """Item ``i``'s labels joined with ``;`` (``-`` for none, ``?`` when unlabelled)."""
    labels = getattr(ds, "labels", None)
    if labels is None:
        return "?"
    return ";".join(vocab[k] for k in sorted(labels[i])) or "-"
