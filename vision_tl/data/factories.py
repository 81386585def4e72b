"""``ImageDataLoaders``: fastai's factories (folders, label functions, regexes, lists, DataFrames, CSV)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .dataloaders import DataLoaders
from .datasets import ImageDataset
from .sources import (
    GrandparentSplitter,
    IndexSplitter,
    RandomSplitter,
    RegexLabeller,
    df_column,
    df_files_labels,
    get_image_files,
    label_items,
    make_vocab,
    parent_label,
    resolve_files,
    split_labels,
)
from .tfmd_dl import TfmdDL

__all__ = ["ImageDataLoaders"]


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class ImageDataLoaders(DataLoaders):
    """fastai's ``ImageDataLoaders`` factories: folders, label functions, regexes, lists, DataFrames, CSV.

    Every factory takes the same keyword arguments after its own: ``valid_pct``/``seed`` (split;
    ``seed`` also seeds shuffling and augmentation), ``vocab``, ``item_tfms``, ``batch_tfms``, ``bs``,
    ``val_bs``, ``device``, ``num_workers`` (default: CPU count, at most 8), ``on_bad_image``
    ("warn": skip a bad file with a warning naming it; "raise": stop), ``shuffle``, ``drop_last``.
    """

    @classmethod
    def from_lists(cls, path: str | Path, fnames: Sequence[Any], labels: Sequence[Any], valid_pct: float = 0.2,
                   seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Items and their labels given as two lists."""
        path = Path(path)
        items = resolve_files(path, fnames)
        if len(labels) != len(items):
            raise ValueError(f"from_lists: {len(items)} fnames but {len(labels)} labels")
        return cls._build(path, items, [str(x) for x in labels], RandomSplitter(valid_pct, seed), seed=seed, **kwargs)

    @classmethod
    def from_path_func(cls, path: str | Path, fnames: Sequence[Any], label_func: Callable[[Path], Any],
                       valid_pct: float = 0.2, seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Labels from ``label_func(path_of_file)``, computed once in this process (lambdas are fine)."""
        path = Path(path)
        items = resolve_files(path, fnames)
        splitter = RandomSplitter(valid_pct, seed)
        return cls._build(path, items, label_items(items, label_func), splitter, seed=seed, label_func=label_func, **kwargs)

    @classmethod
    def from_name_func(cls, path: str | Path, fnames: Sequence[Any], label_func: Callable[[str], Any],
                       valid_pct: float = 0.2, seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Labels from ``label_func(file_name)`` (fastai lesson 1: ``is_cat = lambda f: f[0].isupper()``)."""
        def on_name(p: Any) -> Any:
            return label_func(Path(p).name)

        on_name.__name__ = getattr(label_func, "__name__", "label_func")
        return cls.from_path_func(path, fnames, on_name, valid_pct=valid_pct, seed=seed, **kwargs)

    @classmethod
    def from_path_re(cls, path: str | Path, fnames: Sequence[Any], pat: str, valid_pct: float = 0.2,
                     seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Label = first group of regex ``pat`` searched in the full (POSIX) path."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat, use_path=True), valid_pct=valid_pct, seed=seed, **kwargs)

    @classmethod
    def from_name_re(cls, path: str | Path, fnames: Sequence[Any], pat: str, valid_pct: float = 0.2,
                     seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Label = first group of regex ``pat`` searched in the file name (e.g. ``r'^(.+)_\\d+.jpg$'``)."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat), valid_pct=valid_pct, seed=seed, **kwargs)

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid", valid_pct: float | None = None,
                    seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Label = parent folder. Split by ``train``/``valid`` subfolders, or at random with ``valid_pct``."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"from_folder: folder {str(path)!r} "
                                    + ("is a file, not a folder" if path.exists() else "does not exist"))
        if valid_pct is None:
            for name in (train, valid):
                if not (path / name).is_dir():
                    raise FileNotFoundError(
                        f"from_folder: no {name!r} folder in {str(path)!r}; for a <class>/<image> layout pass "
                        f"valid_pct=0.2 (a seeded random split) instead")
            items = get_image_files(path, folders=[train, valid])
            splitter: Callable = GrandparentSplitter(train, valid)
        else:
            items = get_image_files(path)
            splitter = RandomSplitter(valid_pct, seed)
        if not items:
            raise ValueError(f"from_folder: no image files found in {str(path)!r}")
        _warn_empty_class_folders(path, train, valid, valid_pct is None, items)
        return cls._build(path, items, label_items(items, parent_label), splitter, seed=seed, label_func=parent_label, **kwargs)

    @classmethod
    def from_df(cls, df: Any, path: str | Path = ".", valid_pct: float = 0.2, seed: int | None = None,
                fn_col: int | str = 0, folder: str | None = None, suff: str = "", label_col: int | str = 1,
                label_delim: str | None = None, valid_col: int | str | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Items from column ``fn_col`` (``path/folder/<name><suff>``), labels from ``label_col``.

        ``valid_col`` (a boolean column) chooses the validation rows instead of a random split.
        ``label_delim`` (e.g. ``" "``) makes a multi-label set: each row's labels are split on it.
        """
        path = Path(path)
        items, labels = df_files_labels(df, path, fn_col, label_col, folder, suff, allow_empty=label_delim is not None)
        if label_delim is not None:
            labels = [split_labels(v, label_delim) for v in labels]
        if valid_col is not None:
            vc = df_column(df, valid_col, "valid_col")
            splitter: Callable = IndexSplitter([bool(v) for v in df[vc].tolist()])
        else:
            splitter = RandomSplitter(valid_pct, seed)
        return cls._build(path, items, labels, splitter, seed=seed, **kwargs)

    @classmethod
    def from_csv(cls, path: str | Path, csv_fname: str | Path = "labels.csv", header: Any = "infer",
                 delimiter: str | None = None, **kwargs: Any) -> ImageDataLoaders:
        """``from_df`` on ``path/csv_fname`` read with pandas."""
        import pandas as pd

        path = Path(path)
        csv = path / csv_fname
        if not csv.is_file():
            raise FileNotFoundError(f"from_csv: no CSV file {str(csv)!r}")
        df = pd.read_csv(csv, header=header, **({"delimiter": delimiter} if delimiter else {}))
        return cls.from_df(df, path, **kwargs)

    @classmethod
    def _build(
        cls, path: Path, items: list[Path], labels: list[str] | list[list[str]], splitter: Callable, *, seed: int | None = None,
        label_func: Callable | None = None, vocab: Sequence[str] | None = None, item_tfms: Any = None,
        batch_tfms: Any = None, bs: int = 64, val_bs: int | None = None, device: torch.device | str | None = None,
        num_workers: int | None = None, on_bad_image: str = "warn", shuffle: bool = True, drop_last: bool | None = None,
    ) -> ImageDataLoaders:
        """Split, build the vocab, and make the two DataLoaders (shared transforms)."""
        if not items:
            raise ValueError(f"no image files found in {str(path)!r}")
        train_idx, valid_idx = splitter(items)
        if not train_idx:
            raise ValueError(f"the split left no training items ({len(items)} items under {str(path)!r})")
        used = set(train_idx) | set(valid_idx)
        if len(used) < len(items):
            left = [str(items[i]) for i in range(len(items)) if i not in used]
            warnings.warn(f"{len(left)} of {len(items)} files are in neither the training nor the validation set "
                          f"(e.g. {left[0]!r}): check the folder layout", stacklevel=3)
        if not valid_idx:
            warnings.warn(f"the validation set is empty ({len(items)} items under {str(path)!r}): "
                          "validation metrics will not be computed", stacklevel=3)
        multi = bool(labels) and isinstance(labels[0], list)
        flat = (lambda i: labels[i]) if multi else (lambda i: [labels[i]])
        vocab = make_vocab([lab for i in sorted(used) for lab in flat(i)], vocab)
        if len(vocab) < (1 if multi else 2):
            raise ValueError(f"only one class {vocab!r} found under {str(path)!r}: a classifier needs at least two")
        train_classes = {lab for i in train_idx for lab in flat(i)}
        missing = [v for v in vocab if v not in train_classes]
        if missing:
            warnings.warn(f"classes {missing!r} have no training images under {str(path)!r}", stacklevel=3)
        index = {v: k for k, v in enumerate(vocab)}
        if multi:
            y: list = [[index[lab] for lab in labs if lab in index] for labs in labels]
        else:
            y = [index.get(lab, -1) for lab in labels]  # -1 only for files outside the split (never used)
        item_tfms, batch_tfms = _as_list(item_tfms), _as_list(batch_tfms)
        for t in item_tfms:
            if not callable(t):
                raise TypeError(f"item_tfms must be item transforms such as Resize(224), got {t!r}")
        for t in batch_tfms:
            if not callable(t):
                raise TypeError(f"batch_tfms must be batch transforms such as aug_transforms(), got {t!r}")

        def ds(idx: list[int], train: bool) -> ImageDataset:
            return ImageDataset([items[i] for i in idx], [y[i] for i in idx], vocab, item_tfms, train, on_bad_image,
                                multi_label=multi)

        common = dict(batch_tfms=batch_tfms, device=device, num_workers=num_workers, seed=seed)
        train_dl = TfmdDL(ds(train_idx, True), bs=bs, train=shuffle, drop_last=drop_last, **common)
        valid_dl = TfmdDL(ds(valid_idx, False), bs=val_bs or bs, train=False, **common)
        return cls(train_dl, valid_dl, path=path, label_func=label_func)


def _warn_empty_class_folders(path: Path, train: str, valid: str, split_by_folder: bool, items: list[Path]) -> None:
    """A class folder without images is left out of the vocab: say so instead of dropping it silently."""
    tops = [path / train, path / valid] if split_by_folder else [path]
    used = {p.parent for p in items}
    for top in tops:
        for d in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if split_by_folder or d.name not in (train, valid):
                if d not in used and not any(u.is_relative_to(d) for u in used):
                    warnings.warn(f"class folder {str(d)!r} has no images; it is not a class", stacklevel=3)
