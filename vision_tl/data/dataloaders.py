"""``DataLoaders``: a train and a valid :class:`TfmdDL` sharing transforms and vocab, and ``test_dl``."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batch_tfms import BatchTransform
from .blocks import RegressionDataset
from .datasets import ImageDataset
from .item_tfms import ItemTransform
from .show import pipeline_summary
from .sources import label_items, split_labels
from .tfmd_dl import TfmdDL

__all__ = ["DataLoaders"]


# the training layer's default_loss_func, registered by vision_tl.train.losses when it is imported (the data
# layer may not import it): dls.loss_func answers as fastai's does without a dependency pointing upwards
_DEFAULT_LOSS: Callable[[Any], Any] | None = None


def register_default_loss(f: Callable[[Any], Any]) -> None:
    """Set the function ``dls -> loss`` that ``DataLoaders.loss_func`` calls."""
    global _DEFAULT_LOSS
    _DEFAULT_LOSS = f


class DataLoaders:
    """A train and a valid :class:`TfmdDL` that share item transforms, batch transforms and vocab."""

    def __init__(self, train: TfmdDL, valid: TfmdDL, path: str | Path = ".", label_func: Callable | None = None,
                 test_spec: Any = None):
        self.train, self.valid, self.path = train, valid, Path(path)
        self.label_func = label_func  # kept in the main process only, for test_dl(with_labels=True)
        # a DataBlock's getters (main process only): test_dl treats new items like the training ones
        self.test_spec = test_spec

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
    def loss_func(self) -> Any:
        """The loss a ``Learner`` picks for these targets by default (fastai's ``dls.loss_func``)."""
        if _DEFAULT_LOSS is None:
            raise AttributeError("dls.loss_func comes from vision_tl.train.losses: import vision_tl.all, or build "
                                 "a Learner, first")
        return _DEFAULT_LOSS(self)

    @property
    def multi_label(self) -> bool:
        """True when each item has a set of labels (one-hot float targets, a sigmoid per class)."""
        return bool(getattr(self.train_ds, "multi_label", False))

    @property
    def target_kind(self) -> str:
        """``"category"`` (int64 targets), ``"multi_category"`` (one-hot float) or ``"regression"`` (float)."""
        if getattr(self.train_ds, "n_out", None) is not None:
            return "regression"
        return "multi_category" if self.multi_label else "category"

    @property
    def c(self) -> int:
        """Number of classes (the number of outputs for regression)."""
        return getattr(self.train_ds, "n_out", None) or len(self.vocab)

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
        """A DataLoader over new items with the valid-time transforms (labels from the label function).

        Items are image files; with a DataBlock made on a DataFrame they may also be a DataFrame, whose
        rows go through its ``get_x`` (and ``get_y``). Multi-label labels give one-hot targets.
        """
        if self.test_spec is not None:
            items, labels = self.test_spec.xs_ys(items, with_labels, self.vocab)
        else:
            items, labels = list(items), self._test_labels(items) if with_labels else None
        bad = self.train_ds.on_bad_image
        if self.target_kind == "regression":
            ds: ImageDataset = RegressionDataset(items, labels, self.c, self.item_tfms, train=False, on_bad_image=bad)
        else:
            ds = ImageDataset(items, labels, self.vocab, self.item_tfms, train=False, on_bad_image=bad,
                              multi_label=self.multi_label)
        nw = getattr(self.valid, "workers_set", self.valid.num_workers) if num_workers is None else num_workers
        return TfmdDL(ds, bs=bs or self.valid.bs, train=False, batch_tfms=self.batch_tfms, device=self.device,
                      num_workers=nw, with_labels=with_labels, persistent_workers=False)

    def _test_labels(self, items: Sequence[Any]) -> list:
        """Encoded labels of test files from the label function (names the file when it fails)."""
        if self.label_func is None:
            raise ValueError("with_labels=True needs the label function these DataLoaders were made with")
        if self.target_kind == "regression":
            return [np.asarray(self.label_func(p), np.float64).reshape(-1).tolist() for p in items]
        if not self.multi_label:
            names = [[n] for n in label_items(items, self.label_func)]
        else:
            raw = [self.label_func(p) for p in items]
            names = [split_labels(v, " ") if isinstance(v, str) else [str(x) for x in v] for v in raw]
        index = {v: k for k, v in enumerate(self.vocab)}
        unknown = sorted({n for labs in names for n in labs if n not in index})
        if unknown:
            raise ValueError(f"labels {unknown[:10]!r} of the test items are not in the vocab {self.vocab!r}")
        encoded = [[index[n] for n in labs] for labs in names]
        return encoded if self.multi_label else [labs[0] for labs in encoded]

    def new(self, item_tfms: Any = None, batch_tfms: Any = None, bs: int | None = None, val_bs: int | None = None,
            device: torch.device | str | None = None, num_workers: int | None = None) -> DataLoaders:
        """New DataLoaders on the same items, labels and split with other transforms or batch size
        (progressive resizing: ``learn.dls = dls.new(item_tfms=Resize(256), bs=32)``).

        Arguments left as None keep the current value; the seed is kept, so shuffling stays reproducible.
        """
        tfms = self.item_tfms if item_tfms is None else item_tfms
        item_list = list(tfms) if isinstance(tfms, (list, tuple)) else [tfms]
        btfms = self.batch_tfms if batch_tfms is None else batch_tfms
        batch_list = list(btfms) if isinstance(btfms, (list, tuple)) else [btfms]
        for t in item_list:
            if not callable(t):
                raise TypeError(f"item_tfms must be item transforms such as Resize(224), got {t!r}")
        for t in batch_list:
            if not callable(t):
                raise TypeError(f"batch_tfms must be batch transforms such as aug_transforms(), got {t!r}")

        def dl(old: TfmdDL, new_bs: int | None) -> TfmdDL:
            return old.new(old.dataset.with_item_tfms(item_list), bs=new_bs, batch_tfms=batch_list, device=device,
                           num_workers=num_workers)

        out = copy.copy(self)
        if val_bs is None and self.valid.bs == self.bs:  # the valid batch size followed bs: it still does
            val_bs = bs
        out.train, out.valid = dl(self.train, bs), dl(self.valid, val_bs)
        return out

    def one_batch(self) -> tuple[torch.Tensor, ...]:
        return self.train.one_batch()

    def show_batch(self, max_n: int = 9, nrows: int | None = None, ncols: int | None = None,
                   figsize: tuple[float, float] | None = None, dl: TfmdDL | None = None, return_fig: bool = False,
                   unique: bool = False, **kwargs: Any):
        """A matplotlib grid of one (augmented) training batch, titled with the labels (';'-joined when
        an image has several). ``unique=True`` shows one image under different random augmentations.

        Returns None (so a notebook shows the grid once), or the figure with ``return_fig=True``.
        """
        return (dl or self.train).show_batch(max_n=max_n, nrows=nrows, ncols=ncols, figsize=figsize,
                                             return_fig=return_fig, unique=unique, **kwargs)

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
