"""``DataLoaders``: a train and a valid :class:`TfmdDL` sharing transforms and vocab, and ``test_dl``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .batch_tfms import BatchTransform
from .datasets import ImageDataset
from .item_tfms import ItemTransform
from .show import draw_batch, pipeline_summary
from .sources import label_items
from .tfmd_dl import TfmdDL

__all__ = ["DataLoaders"]


class DataLoaders:
    """A train and a valid :class:`TfmdDL` that share item transforms, batch transforms and vocab."""

    def __init__(self, train: TfmdDL, valid: TfmdDL, path: str | Path = ".", label_func: Callable | None = None):
        self.train, self.valid, self.path = train, valid, Path(path)
        self.label_func = label_func  # kept in the main process only, for test_dl(with_labels=True)

    def __getitem__(self, i: int) -> TfmdDL:
        return (self.train, self.valid)[i]

    @property
    def loaders(self) -> list[TfmdDL]:
        return [self.train, self.valid]

    @property
    def train_ds(self) -> ImageDataset:
        return self.train.dataset

    @property
    def valid_ds(self) -> ImageDataset:
        return self.valid.dataset

    @property
    def vocab(self) -> list[str]:
        return self.train_ds.vocab

    @property
    def multi_label(self) -> bool:
        """True when each item has a set of labels (one-hot float targets, a sigmoid per class)."""
        return bool(getattr(self.train_ds, "multi_label", False))

    @property
    def c(self) -> int:
        """Number of classes."""
        return len(self.vocab)

    @property
    def device(self) -> torch.device:
        return self.train.device

    @property
    def bs(self) -> int:
        return self.train.bs

    @property
    def item_tfms(self) -> list[ItemTransform]:
        return self.train_ds.item_tfms

    @property
    def batch_tfms(self) -> list[BatchTransform]:
        return self.train.batch_tfms

    def to(self, device: torch.device | str) -> DataLoaders:
        for dl in self.loaders:
            dl.to(device)
        return self

    def cuda(self) -> DataLoaders:
        return self.to("cuda")

    def cpu(self) -> DataLoaders:
        return self.to("cpu")

    def test_dl(self, items: Sequence[Any], bs: int | None = None, with_labels: bool = False,
                num_workers: int | None = None) -> TfmdDL:
        """A DataLoader over new items with the valid-time transforms (labels from the label function)."""
        items = list(items)
        labels = None
        if with_labels:
            if self.label_func is None:
                raise ValueError("with_labels=True needs the label function these DataLoaders were made with")
            vocab_idx = {v: k for k, v in enumerate(self.vocab)}
            names = label_items(items, self.label_func)
            unknown = sorted({n for n in names if n not in vocab_idx})
            if unknown:
                raise ValueError(f"labels {unknown[:10]!r} of the test items are not in the vocab {self.vocab!r}")
            labels = [vocab_idx[n] for n in names]
        ds = ImageDataset(items, labels, self.vocab, self.item_tfms, train=False,
                          on_bad_image=self.train_ds.on_bad_image, multi_label=self.multi_label)
        nw = self.valid.num_workers if num_workers is None else num_workers
        return TfmdDL(ds, bs=bs or self.valid.bs, train=False, batch_tfms=self.batch_tfms, device=self.device,
                      num_workers=nw, with_labels=with_labels, persistent_workers=False)

    def one_batch(self) -> tuple[torch.Tensor, ...]:
        return self.train.one_batch()

    def show_batch(self, max_n: int = 9, nrows: int | None = None, ncols: int | None = None,
                   figsize: tuple[float, float] | None = None, dl: TfmdDL | None = None, return_fig: bool = False):
        """A matplotlib grid of one (augmented) training batch, titled with the labels.

        Returns None (so a notebook shows the grid once), or the figure with ``return_fig=True``.
        """
        fig = draw_batch(dl or self.train, self.vocab, max_n=max_n, nrows=nrows, ncols=ncols, figsize=figsize)
        return fig if return_fig else None

    def summary(self, print_it: bool = True) -> str | None:
        """Walk one item through the pipeline, step by step, and say where it breaks.

        Prints the report (and returns None, so a notebook shows it once); ``print_it=False`` returns it.
        """
        text = pipeline_summary(self)
        if not print_it:
            return text
        print(text)
        return None

    def __repr__(self) -> str:
        return (f"DataLoaders(train={len(self.train_ds)} items, valid={len(self.valid_ds)} items, "
                f"c={self.c}, vocab={self.vocab[:10]}{'...' if self.c > 10 else ''}, device={self.device})")
