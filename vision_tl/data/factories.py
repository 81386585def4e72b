"""``ImageDataLoaders``: fastai's factories (folders, label functions, regexes, lists, DataFrames, CSV)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .blocks import CategoryBlock, ImageBlock, MultiCategoryBlock
from .datablock import DataBlock, describe_source
from .dataloaders import DataLoaders
from .sources import (
    ColReader,
    RegexLabeller,
    df_column,
    get_image_files,
    parent_label,
    resolve_files,
    using_attr,
)
from .splitters import ColSplitter, GrandparentSplitter, RandomSplitter

__all__ = ["ImageDataLoaders"]


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class ImageDataLoaders(DataLoaders):
    """fastai's ``ImageDataLoaders`` factories: folders, label functions, regexes, lists, DataFrames, CSV.

    Each factory is a :class:`DataBlock` recipe (one pipeline). Every factory takes the same keyword
    arguments after its own: ``valid_pct``/``seed`` (split; ``seed`` also seeds shuffling and
    augmentation), ``vocab``, ``item_tfms``, ``batch_tfms``, ``bs``, ``val_bs``, ``device``,
    ``num_workers`` (default ``default_num_workers(device)``: none on a CPU device of 4 cores or
    fewer, where the model needs every core; else up to 8), ``on_bad_image`` ("warn": skip a bad file
    with a warning naming it; "raise": stop), ``shuffle``, ``drop_last``.
    """

    @classmethod
    def from_lists(cls, path: str | Path, fnames: Sequence[Any], labels: Sequence[Any], valid_pct: float = 0.2,
                   seed: int | None = None, y_block: Any = None, **kwargs: Any) -> ImageDataLoaders:
        """Items and their labels given as two lists."""
        path = Path(path)
        items = resolve_files(path, fnames)
        if len(labels) != len(items):
            raise ValueError(f"from_lists: {len(items)} fnames but {len(labels)} labels")
        block = DataBlock(blocks=(ImageBlock, y_block or CategoryBlock), get_x=_file_of_pair, get_y=_label_of_pair,
                          splitter=RandomSplitter(valid_pct, seed))
        return cls._loaders(block, list(zip(items, labels)), path, seed, label_func=None, **kwargs)

    @classmethod
    def from_path_func(cls, path: str | Path, fnames: Sequence[Any], label_func: Callable[[Path], Any],
                       valid_pct: float = 0.2, seed: int | None = None, y_block: Any = None,
                       **kwargs: Any) -> ImageDataLoaders:
        """Labels from ``label_func(path_of_file)``, computed once in this process (lambdas are fine)."""
        path = Path(path)
        items = resolve_files(path, fnames)
        return cls._recipe(path, items, label_func, RandomSplitter(valid_pct, seed), seed, y_block, **kwargs)

    @classmethod
    def from_name_func(cls, path: str | Path, fnames: Sequence[Any], label_func: Callable[[str], Any],
                       valid_pct: float = 0.2, seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Labels from ``label_func(file_name)`` (fastai lesson 1: ``is_cat = lambda f: f[0].isupper()``)."""
        on_name = using_attr(label_func, "name")
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
        return cls.from_path_func(path, fnames, RegexLabeller(pat, use_path=False), valid_pct=valid_pct, seed=seed,
                                  **kwargs)

    @classmethod
    def from_folder(cls, path: str | Path, train: str = "train", valid: str = "valid", valid_pct: float | None = None,
                    seed: int | None = None, y_block: Any = None, **kwargs: Any) -> ImageDataLoaders:
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
        return cls._recipe(path, items, parent_label, splitter, seed, y_block, **kwargs)

    @classmethod
    def from_df(cls, df: Any, path: str | Path = ".", valid_pct: float = 0.2, seed: int | None = None,
                fn_col: int | str = 0, folder: str | None = None, suff: str = "", label_col: int | str = 1,
                label_delim: str | None = None, valid_col: int | str | None = None, y_block: Any = None,
                **kwargs: Any) -> ImageDataLoaders:
        """Items from column ``fn_col`` (``path/folder/<name><suff>``), labels from ``label_col``.

        ``valid_col`` (a boolean column) chooses the validation rows instead of a random split.
        ``label_delim`` (e.g. ``" "``) makes a multi-label set: each row's labels are split on it.
        """
        path = Path(path)
        fn, lab = df_column(df, fn_col, "fn_col"), df_column(df, label_col, "label_col")
        splitter: Callable = (ColSplitter(df_column(df, valid_col, "valid_col")) if valid_col is not None
                              else RandomSplitter(valid_pct, seed))
        if y_block is None and label_delim is not None:
            y_block = MultiCategoryBlock
        block = DataBlock(blocks=(ImageBlock, y_block or CategoryBlock), splitter=splitter,
                          get_x=_FileColumn(fn, path / folder if folder else path, suff),
                          get_y=ColReader(lab, label_delim=label_delim))
        return cls._loaders(block, df, path, seed, **kwargs)

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
    def _recipe(cls, path: Path, items: list[Path], label_func: Callable, splitter: Callable, seed: int | None,
                y_block: Any = None, **kwargs: Any) -> ImageDataLoaders:
        """The DataBlock of a factory over a list of files: get_y = the label function."""
        if not items:
            raise ValueError(f"no image files found in {str(path)!r}")
        block = DataBlock(blocks=(ImageBlock, y_block or CategoryBlock), get_y=label_func, splitter=splitter)
        return cls._loaders(block, items, path, seed, **kwargs)

    @classmethod
    def _loaders(cls, block: DataBlock, source: Any, path: Path, seed: int | None, item_tfms: Any = None,
                 batch_tfms: Any = None, label_func: Any = ..., **kwargs: Any) -> ImageDataLoaders:
        block = block.new(item_tfms=item_tfms, batch_tfms=batch_tfms)
        dls = block.dataloaders(source, seed=seed, path=path, **kwargs)
        if dls.target_kind == "category" and len(dls.vocab) < 2:  # a factory's data is for training: say it now
            raise ValueError(f"only one class {list(dls.vocab)!r} found in {describe_source(source)}: "
                             "a classifier needs at least two")
        out = cls(dls.train, dls.valid, path=dls.path, label_func=dls.label_func, test_spec=dls.test_spec)
        if label_func is None:  # labels given as a list: there is no function for test_dl(with_labels=True)
            out.label_func = out.test_spec = None
        return out


class _FileColumn:
    """``from_df``'s get_x: the file in column ``col``, as given when it exists, else ``base/<name><suff>``."""

    def __init__(self, col: Any, base: Path, suff: str):
        self.col, self.base, self.suff = col, base, suff
        self.__name__ = f"file column {col!r}"

    def __call__(self, row: Any) -> Path:
        p = Path(f"{row[self.col]}{self.suff}")
        return p if p.is_absolute() or p.exists() else self.base / p


def _file_of_pair(pair: tuple) -> Any:
    """``from_lists``' get_x: the file of a (file, label) pair."""
    return pair[0]


def _label_of_pair(pair: tuple) -> Any:
    """``from_lists``' get_y: the label of a (file, label) pair."""
    return pair[1]


def _warn_empty_class_folders(path: Path, train: str, valid: str, split_by_folder: bool, items: list[Path]) -> None:
    """A class folder without images is left out of the vocab: say so instead of dropping it silently."""
    tops = [path / train, path / valid] if split_by_folder else [path]
    used = {p.parent for p in items}
    for top in tops:
        for d in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if split_by_folder or d.name not in (train, valid):
                if d not in used and not any(u.is_relative_to(d) for u in used):
                    warnings.warn(f"class folder {str(d)!r} has no images; it is not a class", stacklevel=3)
