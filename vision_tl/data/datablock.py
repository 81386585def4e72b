"""``DataBlock``: fastai's recipe for DataLoaders (get_items → split → get_x/get_y → vocab → datasets).

Everything up to the datasets runs here, in the main process, once: ``get_x``/``get_y`` may be lambdas
(they never travel to a worker), and a getter that fails is reported with the step and the item.
Decoding, item transforms (workers), collate (uint8) and batch transforms (on the device) are the
same :class:`ImageDataset`/:class:`TfmdDL` pipeline the ``ImageDataLoaders`` factories use.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..basics import CategoryMap
from .batch_size import auto_bs
from .block_summary import block_summary
from .blocks import CategoryBlock, ImageBlock, MultiCategoryBlock, RegressionBlock, RegressionDataset
from .book_datasets import ItemView, RawDatasets
from .dataloaders import DataLoaders
from .datasets import ImageDataset
from .describe import GetterError, describe, describe_source, func_name
from .sources import LabelError
from .splitters import RandomSplitter, as_rows, is_dataframe
from .tfmd_dl import TfmdDL

__all__ = ["DataBlock", "Datasets", "GetterError"]

_TARGET_BLOCKS = (CategoryBlock, MultiCategoryBlock, RegressionBlock)


class _Compose:
    """Functions applied left to right (fastai composes a list given as one getter)."""

    def __init__(self, fs: Sequence[Callable]):
        self.fs = list(fs)
        self.__name__ = " → ".join(func_name(f) for f in self.fs)

    def __call__(self, x: Any) -> Any:
        for f in self.fs:
            x = f(x)
        return x


def _getter(f: Any, name: str) -> Callable | None:
    if f is None:
        return None
    if isinstance(f, (list, tuple)):
        fs = [_getter(g, name) for g in f]
        return fs[0] if len(fs) == 1 else _Compose([g for g in fs if g is not None])
    if not callable(f):
        raise TypeError(f"{name} must be a function (or a list of functions applied in turn), got {f!r}")
    return f


def _block(b: Any, position: str) -> Any:
    if isinstance(b, type):
        b = b()
    ok = (ImageBlock,) if position == "input" else _TARGET_BLOCKS
    if not isinstance(b, ok):
        raise TypeError(f"DataBlock: blocks must be (ImageBlock, CategoryBlock | MultiCategoryBlock | RegressionBlock); "
                        f"the {position} block is {b!r}")
    return b


def _tfm_list(tfms: Any, arg: str, what: str) -> list:
    tfms = [] if tfms is None else list(tfms) if isinstance(tfms, (list, tuple)) else [tfms]
    for t in tfms:
        if not callable(t):
            raise TypeError(f"{arg} must be {what}, got {t!r}")
    return tfms


class DataBlock:
    """fastai's ``DataBlock`` for image classification and regression.

    Args:
        blocks: ``(ImageBlock, CategoryBlock)``, ``(ImageBlock, MultiCategoryBlock)`` or
            ``(ImageBlock, RegressionBlock)`` (classes or instances). None (fastai's step-by-step start):
            ``datasets`` passes the items through unchanged (see ``RawDatasets``); ``dataloaders``
            reads them as ``(ImageBlock, CategoryBlock)``.
        get_items: ``source -> items`` (e.g. ``get_image_files``); None: the source is the items
            (a list, or a DataFrame whose rows the getters receive).
        get_x: ``item -> image file`` (None: the item itself); get_y: ``item -> label``. Either may be a
            list of functions, applied in turn.
        splitter: ``items -> (train_idx, valid_idx)``; default ``RandomSplitter(0.2)``.
        item_tfms, batch_tfms: as for the factories (``Resize(224)``, ``aug_transforms()``).
        n_inp: number of inputs (only 1 is supported).
        getters: ``[get_x, get_y]``, an alternative to the two arguments.
    """

    def __init__(self, blocks: Sequence[Any] | None = None, get_items: Callable | None = None,
                 get_x: Any = None, get_y: Any = None, splitter: Callable | None = None, item_tfms: Any = None,
                 batch_tfms: Any = None, n_inp: int | None = None, getters: Sequence[Any] | None = None):
        self._args = dict(blocks=blocks, get_items=get_items, get_x=get_x, get_y=get_y, splitter=splitter,
                          item_tfms=item_tfms, batch_tfms=batch_tfms, n_inp=n_inp, getters=getters)
        self.has_blocks = blocks is not None
        blocks = [ImageBlock, CategoryBlock] if blocks is None else list(blocks) if isinstance(blocks, (list, tuple)) else [blocks]
        if n_inp not in (None, 1) or len(blocks) != 2:
            raise ValueError(f"DataBlock supports one image input and one target: blocks=(ImageBlock, <target block>), "
                             f"got blocks={blocks!r}, n_inp={n_inp!r}")
        self.blocks = (_block(blocks[0], "input"), _block(blocks[1], "target"))
        self.n_inp = 1
        if getters is not None:
            if len(getters) != 2 or get_x is not None or get_y is not None:
                raise ValueError("getters must be [get_x, get_y] (and then get_x/get_y are not given)")
            get_x, get_y = getters
        self.get_x, self.get_y = _getter(get_x, "get_x"), _getter(get_y, "get_y")
        if get_items is not None and not callable(get_items):
            raise TypeError(f"get_items must be a function source -> items (e.g. get_image_files), got {get_items!r}")
        if splitter is not None and not callable(splitter):
            raise TypeError(f"splitter must be a function items -> (train_idx, valid_idx), got {splitter!r}")
        self.get_items, self.splitter = get_items, splitter or RandomSplitter(0.2)
        self.item_tfms = _tfm_list(item_tfms, "item_tfms", "item transforms such as Resize(224)")
        self.batch_tfms = _tfm_list(batch_tfms, "batch_tfms", "batch transforms such as aug_transforms()")

    @property
    def target_block(self) -> Any:
        return self.blocks[1]

    def new(self, **changes: Any) -> DataBlock:
        """A copy with some arguments changed (fastai's ``dblock.new(item_tfms=..., batch_tfms=...)``)."""
        unknown = sorted(set(changes) - set(self._args))
        if unknown:
            raise TypeError(f"DataBlock.new: unknown arguments {unknown}; it takes {sorted(self._args)}")
        args = {**self._args, **changes}
        if args["getters"] is not None and ("get_x" in changes or "get_y" in changes):
            gx, gy = args["getters"]
            args.update(getters=None, get_x=changes.get("get_x", gx), get_y=changes.get("get_y", gy))
        return DataBlock(**args)

    # -- the steps ----------------------------------------------------------------------------
    def items_of(self, source: Any) -> Any:
        """Step 1: ``get_items(source)`` (or the source itself)."""
        if self.get_items is None:
            return source if is_dataframe(source) or isinstance(source, Sequence) else list(source)
        try:
            items = self.get_items(source)
        except (FileNotFoundError, NotADirectoryError):
            raise
        except Exception as e:  # noqa: BLE001 - re-raised naming the step and the source
            raise GetterError(f"get_items {func_name(self.get_items)}", source, f"{type(e).__name__}: {e}") from e
        return items if is_dataframe(items) or isinstance(items, Sequence) else list(items)

    def split(self, items: Any) -> tuple[list[int], list[int]]:
        """Step 2: the splitter's ``(train_idx, valid_idx)``, checked."""
        try:
            train_idx, valid_idx = self.splitter(items)
        except (ValueError, TypeError) as e:
            raise type(e)(f"splitter {func_name(self.splitter)}: {e}") from e
        train_idx, valid_idx = [int(i) for i in train_idx], [int(i) for i in valid_idx]
        n = len(items)
        bad = [i for i in train_idx + valid_idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"splitter {func_name(self.splitter)} returned indices out of range for {n} items: {bad[:5]}")
        both = set(train_idx) & set(valid_idx)
        if both:
            raise ValueError(f"splitter {func_name(self.splitter)} put {len(both)} items in both sets "
                             f"(e.g. {describe(as_rows(items)[min(both)])})")
        return train_idx, valid_idx

    def x_of(self, row: Any) -> Any:
        """Step 3: ``get_x(item)``, checked to be an image source (a file must exist)."""
        x = row
        if self.get_x is not None:
            try:
                x = self.get_x(row)
            except Exception as e:  # noqa: BLE001 - re-raised naming the item
                raise GetterError(f"get_x {func_name(self.get_x)}", row, f"{type(e).__name__}: {e}") from e
        if isinstance(x, (str, os.PathLike)):
            return Path(x)
        if isinstance(x, bytes) or hasattr(x, "getbands"):  # bytes, or a PIL image
            return x
        hint = " (the items are table rows: pass get_x=ColReader('fname', pref=path))" if hasattr(x, "to_dict") else ""
        raise GetterError(f"get_x {func_name(self.get_x)}" if self.get_x else "get_x (none given)", row,
                          f"gave {type(x).__name__}, not an image file path{hint}")

    def y_of(self, row: Any) -> Any:
        """Step 4: ``get_y(item)``, read by the target block (a failure names the item)."""
        if self.get_y is None:
            raise ValueError("DataBlock needs get_y: how to label an item (e.g. parent_label)")
        name = f"get_y {func_name(self.get_y)}"
        try:
            y = self.get_y(row)
        except Exception as e:  # noqa: BLE001 - any user error is re-raised with the item named
            raise LabelError(describe(row), f"{name} raised {type(e).__name__}: {e}") from e
        try:
            return self.target_block.read(y)
        except ValueError as e:
            raise LabelError(describe(row), f"{name} returned {y!r}: {e}") from e

    # -- datasets and loaders -------------------------------------------------------------------
    def datasets(self, source: Any, vocab: Sequence[str] | None = None, on_bad_image: str = "warn"
                 ) -> Datasets | RawDatasets:
        """Items, split, labels and vocab: the train and valid datasets (images decoded lazily).

        Without ``blocks`` the items pass through ``get_x``/``get_y`` unchanged (a ``RawDatasets``).
        """
        if not self.has_blocks:
            return self._raw_datasets(source)
        return self._datasets(source, vocab, on_bad_image)

    def _raw_datasets(self, source: Any) -> RawDatasets:
        items = self.items_of(source)
        rows = as_rows(items)
        get_x, get_y = self.get_x, self.get_y

        def guarded(f: Callable | None, step: str) -> Callable | None:
            if f is None:
                return None

            def call(row: Any) -> Any:
                try:
                    return f(row)
                except Exception as e:  # noqa: BLE001 - re-raised naming the step and the item
                    raise GetterError(f"{step} {func_name(f)}", row, f"{type(e).__name__}: {e}") from e
            return call

        return RawDatasets(rows, self.split(items), guarded(get_x, "get_x"), guarded(get_y, "get_y"))

    def _datasets(self, source: Any, vocab: Sequence[str] | None, on_bad_image: str) -> Datasets:
        if self.get_y is None:
            raise ValueError("DataBlock needs get_y: how to label an item (e.g. parent_label)")
        items = self.items_of(source)
        if len(items) == 0:
            raise ValueError(f"get_items found no items in {describe_source(source)}")
        train_idx, valid_idx = self.split(items)
        if not train_idx:
            raise ValueError(f"the split left no training items ({len(items)} items from {describe_source(source)})")
        used = sorted(set(train_idx) | set(valid_idx))
        if len(used) < len(items):
            left = [describe(as_rows(items)[i]) for i in range(len(items)) if i not in set(used)]
            warnings.warn(f"{len(left)} of {len(items)} files are in neither the training nor the validation set "
                          f"(e.g. {left[0]!r}): check the folder layout", stacklevel=3)
        if not valid_idx:
            warnings.warn(f"the validation set is empty ({len(items)} items from {describe_source(source)}): "
                          "validation metrics will not be computed", stacklevel=3)
        rows = as_rows(items)
        xs, ys = {}, {}
        for i in used:
            row = rows[i]
            xs[i] = self.x_of(row)
            ys[i] = self.y_of(row)
        missing = [str(x) for x in xs.values() if isinstance(x, Path) and not x.exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} image file(s) not found: {missing[:5]}")
        return Datasets(self, source, items, (train_idx, valid_idx), xs, ys, vocab, on_bad_image)

    def dataloaders(self, source: Any, bs: int | None = None, val_bs: int | None = None, device: torch.device | str | None = None,
                    num_workers: int | None = None, seed: int | None = None, on_bad_image: str = "warn",
                    shuffle: bool = True, drop_last: bool | None = None, vocab: Sequence[str] | None = None,
                    path: str | Path = ".") -> DataLoaders:
        """The train and valid DataLoaders (the factories' keyword arguments; ``seed`` seeds shuffling
        and augmentation, the splitter has its own; ``bs=None`` picks it from the data, see ``auto_bs``)."""
        dsets = self._datasets(source, vocab, on_bad_image)
        return dsets.dataloaders(bs=bs, val_bs=val_bs, device=device, num_workers=num_workers, seed=seed,
                                 shuffle=shuffle, drop_last=drop_last, path=path)

    def summary(self, source: Any, bs: int = 4, show_batch: bool = False, print_it: bool = True,
                **kwargs: Any) -> str | None:
        """Walk one item through every step (get_items, split, get_x, get_y, vocab, decode, item
        transforms, collate, batch transforms) and say where and why it breaks.

        Prints the report (returns None) or returns it with ``print_it=False``; ``show_batch=True``
        then draws a batch (``kwargs`` go to ``show_batch``).
        """
        text, dls = block_summary(self, source, bs)
        if show_batch and dls is not None:
            dls.show_batch(**kwargs)
        if not print_it:
            return text
        print(text)
        return None

    def __repr__(self) -> str:
        return (f"DataBlock(blocks={self.blocks}, get_items={func_name(self.get_items) if self.get_items else None}, "
                f"get_x={func_name(self.get_x) if self.get_x else None}, get_y={func_name(self.get_y) if self.get_y else None}, "
                f"splitter={self.splitter!r}, item_tfms={self.item_tfms}, batch_tfms={self.batch_tfms})")


class Datasets:
    """The labelled, split items of a :class:`DataBlock`: ``.train``/``.valid`` datasets, ``.vocab``."""

    def __init__(self, block: DataBlock, source: Any, items: Any, splits: tuple[list[int], list[int]],
                 xs: dict[int, Any], ys: dict[int, Any], vocab: Sequence[str] | None, on_bad_image: str):
        self.block, self.source, self.items, self.splits = block, source, items, splits
        tb = block.target_block
        train_idx, valid_idx = splits
        self.vocab = CategoryMap(tb.make_vocab([ys[i] for i in sorted(ys)], vocab))
        if tb.kind != "regression" and not self.vocab:
            raise ValueError(f"no class found in {describe_source(source)}: a classifier needs at least two")
        # one class is allowed here (the book shows presizing on a DataBlock of one image): a Learner refuses it
        if tb.kind != "regression":
            train_classes = {lab for i in train_idx for lab in (ys[i] if tb.kind == "multi" else [ys[i]])}
            missing = [v for v in self.vocab if v not in train_classes]
            if missing:
                warnings.warn(f"classes {missing!r} have no training images in {describe_source(source)}", stacklevel=4)
        self.n_out = tb.out_size([ys[i] for i in ys]) if tb.kind == "regression" else len(self.vocab)
        item_tfms = list(block.item_tfms)  # one list shared by train, valid and test datasets (not the block's)

        def ds(idx: list[int], train: bool) -> ImageDataset:
            x = [xs[i] for i in idx]
            y = tb.encode([ys[i] for i in idx], self.vocab)
            if tb.kind == "regression":
                return RegressionDataset(x, y, self.n_out, item_tfms, train, on_bad_image)
            return ImageDataset(x, y, self.vocab, item_tfms, train, on_bad_image, multi_label=tb.kind == "multi")

        self.train_ds, self.valid_ds = ds(train_idx, True), ds(valid_idx, False)
        self.train, self.valid = ItemView(self.train_ds), ItemView(self.valid_ds)  # dsets.train[i]: (PILImage, target)

    @property
    def c(self) -> int:
        return self.n_out

    def __len__(self) -> int:
        return len(self.train) + len(self.valid)

    def __getitem__(self, i: int) -> ImageDataset:
        return (self.train, self.valid)[i]

    def dataloaders(self, bs: int | None = None, val_bs: int | None = None, device: torch.device | str | None = None,
                    num_workers: int | None = None, seed: int | None = None, shuffle: bool = True,
                    drop_last: bool | None = None, path: str | Path = ".") -> DataLoaders:
        """The train and valid DataLoaders; ``bs=None`` (the default): up to 64, enough steps per epoch."""
        if bs is None:
            bs = auto_bs(len(self.train))
        common = dict(batch_tfms=list(self.block.batch_tfms), device=device, num_workers=num_workers, seed=seed)
        train_dl = TfmdDL(self.train_ds, bs=bs, train=shuffle, drop_last=drop_last, **common)
        valid_dl = TfmdDL(self.valid_ds, bs=val_bs or bs, train=False, **common)
        spec = _TestSpec(self.block, is_dataframe(self.items))
        return DataLoaders(train_dl, valid_dl, path=path, label_func=spec.label_func, test_spec=spec)

    def __repr__(self) -> str:
        return f"Datasets(train={len(self.train)} items, valid={len(self.valid)} items, vocab={self.vocab[:10]})"


class _TestSpec:
    """How ``test_dl`` treats new items like the training ones: rows of a DataFrame through get_x/get_y."""

    def __init__(self, block: DataBlock, table: bool):
        self.block, self.table = block, table

    @property
    def label_func(self) -> Callable | None:
        return self.block.get_y if not self.table else None

    def xs_ys(self, items: Any, with_labels: bool, vocab: Sequence[str]) -> tuple[list[Any], list | None]:
        """Images and encoded labels of new items: a DataFrame's rows go through get_x (and get_y);
        files are used as given, through get_x only when the training items were files too."""
        use_getters = is_dataframe(items) or not self.table
        rows = list(as_rows(items))
        xs = [self.block.x_of(r) if use_getters else r for r in rows]
        if not with_labels:
            return xs, None
        tb = self.block.target_block
        labels = [self.block.y_of(r) for r in rows]
        if tb.kind == "single":
            unknown = sorted({lab for lab in labels if lab not in set(vocab)})
        elif tb.kind == "multi":
            unknown = sorted({lab for labs in labels for lab in labs if lab not in set(vocab)})
        else:
            unknown = []
        if unknown:
            raise ValueError(f"labels {unknown[:10]!r} of the test items are not in the vocab {list(vocab)!r}")
        return xs, tb.encode(labels, vocab)
