"""Interpret a multi-label classifier: a 2x2 confusion matrix per class, a per-class report, top losses.

A multi-label model makes one yes/no decision per class (probability > ``thresh``), so its confusion
is one ``[[tn, fp], [fn, tp]]`` matrix per class (sklearn's ``multilabel_confusion_matrix`` layout)
rather than one ``(c, c)`` matrix. ``ClassificationInterpretation.from_learner`` returns this class
for a multi-label learner; the CLI's ``evaluate`` builds it from a loaded model's predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from .interpret_common import image_grid, item_image, ordered_dl, report_lines

_SCORES = {"precision": metrics.PrecisionMulti, "recall": metrics.RecallMulti, "f1": metrics.F1ScoreMulti}


class MultiLabelInterpretation:
    """Predictions of a multi-label classifier over a labelled set, and views of where it goes wrong.

    Args:
        vocab: class names.
        probs: ``(n, c)`` per-class (sigmoid) probabilities.
        targets: ``(n, c)`` one-hot targets.
        thresh: a class is predicted when its probability is above ``thresh``.
        losses: ``(n,)`` per-item losses (default: binary cross-entropy of ``probs``, mean over classes).
        items, dataset: the inputs, to show top losses (as ``ClassificationInterpretation``).
    """

    def __init__(self, vocab: Sequence[str], probs: torch.Tensor, targets: torch.Tensor, thresh: float = 0.5,
                 losses: torch.Tensor | None = None, items: Sequence[Any] | None = None, dataset: Any = None) -> None:
        self.vocab = [str(v) for v in vocab]
        self.probs = torch.as_tensor(probs).detach().float().cpu()
        self.targets = torch.as_tensor(targets).detach().float().cpu()
        shape = (len(self.probs), len(self.vocab))
        if self.probs.ndim != 2 or self.probs.shape[1] != len(self.vocab) or self.targets.shape != shape:
            raise ValueError(f"probs and targets must both be (n, {len(self.vocab)}) for a vocab of {len(self.vocab)}, "
                             f"got {tuple(self.probs.shape)} and {tuple(self.targets.shape)}")
        if not 0 < thresh < 1:
            raise ValueError(f"thresh must be in (0, 1), got {thresh!r}")
        self.thresh = float(thresh)
        if losses is None:
            losses = F.binary_cross_entropy(self.probs.clamp(1e-7, 1 - 1e-7), self.targets, reduction="none").mean(1)
        self.losses = torch.as_tensor(losses).detach().float().cpu()
        self.items, self.dataset = items, dataset
        self.preds = self.probs > self.thresh

    @classmethod
    def from_learner(cls, learn: Any, ds_idx: int = 1, dl: Any = None) -> MultiLabelInterpretation:
        """Predict the validation set (``ds_idx=0``: the training set in order; or ``dl``) with ``learn``."""
        dl = dl if dl is not None else ordered_dl(learn, ds_idx)
        probs, targets, losses = learn.get_preds(dl=dl, with_loss=True)
        ds = dl.dataset
        return cls(learn.dls.vocab, probs, targets, getattr(learn.loss_func, "thresh", 0.5), losses,
                   items=getattr(ds, "items", None), dataset=ds)

    def _metric(self, kind: str, average: str) -> float:
        return float(_SCORES[kind](thresh=self.thresh, sigmoid=False, average=average)(self.probs, self.targets))

    def confusion_matrix(self) -> np.ndarray:
        """``(c, 2, 2)`` counts: for class ``k``, ``cm[k] = [[tn, fp], [fn, tp]]`` (sklearn's layout)."""
        return metrics.multilabel_confusion_matrix(self.probs, self.targets, self.thresh, sigmoid=False).numpy()

    def classification_report(self) -> list[dict[str, Any]]:
        """Per-class precision, recall, F1 and support (number of items that have the label)."""
        per = {k: m(thresh=self.thresh, sigmoid=False).per_class(self.probs, self.targets).tolist()
               for k, m in _SCORES.items()}
        support = self.targets.sum(0).long().tolist()
        return [{"class": name, **{k: v[i] for k, v in per.items()}, "support": support[i]}
                for i, name in enumerate(self.vocab)]

    def averages(self) -> dict[str, dict[str, float]]:
        """``{"micro"|"macro"|"samples": {"precision", "recall", "f1"}}`` (sklearn's averages)."""
        return {avg: {k: self._metric(k, avg) for k in _SCORES} for avg in ("micro", "macro", "samples")}

    def accuracy(self) -> float:
        """``accuracy_multi``: the fraction of (item, class) decisions that are right."""
        return float(metrics.accuracy_multi(self.probs, self.targets, self.thresh, sigmoid=False))

    def print_classification_report(self) -> str:
        """Print (and return) per-class precision/recall/F1/support and the micro/macro/samples averages."""
        rows = self.classification_report()
        width = max(14, *(len(r["class"]) for r in rows))
        lines = report_lines(rows, width)
        n_labels = int(self.targets.sum())
        for avg, s in self.averages().items():
            lines.append(f"{avg + ' avg':>{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:8.3f}"
                         f"  {n_labels:7d}")
        lines.append(f"{'accuracy_multi':>{width}}  {'':9}  {'':6}  {self.accuracy():8.3f}  {self.targets.numel():7d}")
        text = "\n".join(lines)
        print(text)
        return text

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(losses, indices)`` of the ``k`` items with the largest (or smallest) loss."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def labels_of(self, row: torch.Tensor) -> list[str]:
        """The class names where ``row`` (a bool/0-1 vector of length c) is set."""
        return [self.vocab[i] for i in row.bool().nonzero().flatten().tolist()]

    def plot_confusion_matrix(self, normalize: bool = False, cmap: str = "Blues", figsize: tuple | None = None,
                              ncols: int | None = None, return_fig: bool = False) -> Any:
        """One 2x2 matrix per class (rows actual no/yes, columns predicted no/yes); None, or the ``Figure``
        with ``return_fig=True``."""
        import matplotlib.pyplot as plt

        cm = self.confusion_matrix().astype(float)
        if normalize:
            cm = cm / np.maximum(cm.sum(2, keepdims=True), 1)
        c = len(self.vocab)
        ncols = ncols or min(c, 4)
        nrows = -(-c // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (2.6 * ncols, 2.6 * nrows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for k, ax in enumerate(axes.flat[:c]):
            ax.axis("on")
            ax.imshow(cm[k], cmap=cmap, vmin=0, vmax=max(cm[k].max(), 1e-9))
            ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no", "yes"], yticklabels=["no", "yes"],
                   title=self.vocab[k])
            for i in range(2):
                for j in range(2):
                    v = cm[k, i, j]
                    ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                            color="white" if v > cm[k].max() / 2 else "black", fontsize=9)
        fig.supxlabel("Predicted")
        fig.supylabel("Actual")
        fig.tight_layout()
        return fig if return_fig else None

    def plot_top_losses(self, k: int = 9, largest: bool = True, ncols: int | None = None, nrows: int | None = None,
                        figsize: tuple[float, float] | None = None, return_fig: bool = False) -> Any:
        """The ``k`` worst-predicted images titled ``predicted / actual / loss`` (None, or the ``Figure``)."""
        losses, idxs = self.top_losses(k, largest)
        titles = [f"{';'.join(self.labels_of(self.preds[i])) or '-'}/{';'.join(self.labels_of(self.targets[i])) or '-'}"
                  f"\n{float(loss):.2f}" for loss, i in zip(losses, idxs)]
        fig = image_grid([self._image(int(i)) for i in idxs], titles, ncols, suptitle="predicted/actual  loss", nrows=nrows,
                    figsize=figsize)
        return fig if return_fig else None

    def _image(self, i: int) -> np.ndarray:
        return item_image(self.dataset, self.items, i)
