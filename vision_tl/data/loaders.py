"""Datasets and DataLoaders for image classification, and the ``ImageDataLoaders`` factories.

Flow: the dataset decodes a file (JPEG draft mode when shrinking) and applies the item transforms in
a worker, returning uint8 HWC; batches are collated to uint8 NCHW, moved to the device once
(pinned, non-blocking on CUDA) and only there turned to float by the batch transforms. On a CPU
device the workers run the batch transforms as well, leaving the main process to the model.

Reproducibility: the sampler hands every index to the workers together with a per-item seed derived
from ``(seed, epoch, position)``, so a seeded run draws the same crops whatever the number of
workers; shuffling is seeded from ``(seed, epoch)`` and each batch's transforms from its first item.

Bad images at training time (``on_bad_image``): ``"warn"`` (default) skips the file with a
``warnings.warn`` naming it, once per file and process, and uses the next item instead, so one
corrupt file in 10,000 does not stop a long run; ``"raise"`` stops with an :class:`ImageError` naming
the file. Call :func:`vision_tl.verify_images` beforehand to find (and remove) such files.
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .batch_tfms import BatchTransform, Normalize, apply_batch_tfms
from .images import ImageError, load_rgb
from .item_tfms import ItemTransform, apply_item_tfms, draft_size_for, limit_worker_threads
from .sources import (
    GrandparentSplitter,
    IndexSplitter,
    RandomSplitter,
    RegexLabeller,
    get_image_files,
    label_items,
    make_vocab,
    parent_label,
)

_BAD_IMAGE_MODES = ("warn", "raise")
_MAX_SUBSTITUTES = 20  # consecutive bad files tolerated before giving up


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_num_workers() -> int:
    """One worker per CPU core, at most 8 (decoding is the bottleneck; more rarely helps)."""
    return min(os.cpu_count() or 1, 8)


def _check_device(device: torch.device | str) -> torch.device:
    """A torch device that exists here (a clear error instead of a failure at the first batch)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine; use device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available on this machine; use device='cpu'")
    return dev


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class ImageDataset(Dataset):
    """Items (paths, or anything :func:`open_image` takes) with integer labels into ``vocab``.

    ``ds[i]`` is ``(uint8 HWC array, label)``; the label is -1 for unlabelled items. ``ds[(i, seed)]``
    draws the random item transforms from ``numpy.random.default_rng(seed)`` and returns
    ``(array, label, seed)`` so that the collate function can seed the batch transforms.
    """

    def __init__(
        self, items: Sequence[Any], labels: Sequence[int] | None, vocab: Sequence[str],
        item_tfms: Sequence[ItemTransform] | None = None, train: bool = False, on_bad_image: str = "warn",
    ):
        if on_bad_image not in _BAD_IMAGE_MODES:
            raise ValueError(f"on_bad_image must be one of {_BAD_IMAGE_MODES}, got {on_bad_image!r}")
        if labels is not None and len(labels) != len(items):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        self.items = list(items)
        self.labels = [int(y) for y in labels] if labels is not None else None
        self.vocab, self.train = list(vocab), train
        # a list is kept as is: train, valid and test datasets share one list of item transforms
        self.item_tfms = item_tfms if isinstance(item_tfms, list) else list(item_tfms or [])
        self.on_bad_image = on_bad_image
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Decode item ``i`` and apply the item transforms (raises :class:`ImageError`)."""
        img = load_rgb(self.items[i], draft_size=draft_size_for(self.item_tfms))
        return apply_item_tfms(img, self.item_tfms, self.train, rng=rng)

    def __getitem__(self, key: int | tuple[int, Any]) -> tuple:
        i, seed = key if isinstance(key, tuple) else (key, None)
        rng = np.random.default_rng(seed) if self.train else None
        j = int(i)
        for _ in range(min(_MAX_SUBSTITUTES, len(self))):
            try:
                item = self.load(j, rng), (self.labels[j] if self.labels is not None else -1)
                return (*item, seed) if isinstance(key, tuple) else item
            except ImageError as e:
                if self.on_bad_image == "raise":
                    raise
                if str(e.path) not in self._warned:
                    self._warned.add(str(e.path))
                    warnings.warn(f"skipping bad image: {e} (using another item instead)", stacklevel=2)
                j = (j + 1) % len(self)
        raise ImageError(None, f"{_MAX_SUBSTITUTES} bad images in a row from item {i}: run verify_images on the data")


def collate_uint8(batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack uint8 HWC images into a uint8 NCHW tensor (channels-last memory) and labels into int64."""
    imgs, ys = [b[0] for b in batch], [b[1] for b in batch]
    shapes = sorted({im.shape for im in imgs})
    if len(shapes) > 1:
        raise ValueError(
            f"images in a batch have different sizes {shapes[:3]}: pass item_tfms=Resize(size) (or another "
            "item transform) so that every image comes out the same size"
        )
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    return x, torch.tensor(ys, dtype=torch.int64)


def _batch_generator(key: Any) -> torch.Generator:
    """The batch transforms' generator, seeded from the batch's first item seed ``(seed, epoch, position)``."""
    g = torch.Generator()
    if key is None:
        return g.manual_seed(int(torch.randint(2**62, (1,)).item()))
    return g.manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1))


class _Collate:
    """Collate to uint8 NCHW, keeping the batch's seed; with ``batch_tfms`` also runs them (in the worker).

    Running the batch transforms in the workers is used for a CPU device only: there the workers are
    the device, and the main process stays free for the model.
    """

    def __init__(self, batch_tfms: list[BatchTransform] | None = None, train: bool = False):
        self.batch_tfms, self.train = batch_tfms, train

    def __call__(self, batch: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        x, y = collate_uint8(batch)
        key = batch[0][2] if len(batch[0]) > 2 else None
        if self.batch_tfms is not None:
            x = apply_batch_tfms(x, self.batch_tfms, self.train, generator=_batch_generator(key))
        return x, y, key


def _worker_init(worker_id: int) -> None:
    """Single-threaded OpenCV; numpy's global RNG seeded per worker (torch seeds only torch and random),
    so custom transforms that use ``np.random`` do not repeat the same draws in every worker."""
    limit_worker_threads()
    np.random.seed(torch.initial_seed() % 2**32)


class _SeededSampler(Sampler):
    """Yields ``(index, (seed, epoch, position))`` from the DataLoader's current index order."""

    def __init__(self, dl: TfmdDL):
        # a weak reference: no cycle, so dropping the TfmdDL shuts its persistent workers down at once
        self._dl = weakref.ref(dl)

    @property
    def dl(self) -> TfmdDL:
        dl = self._dl()
        if dl is None:
            raise RuntimeError("the TfmdDL of this sampler no longer exists")
        return dl

    def __len__(self) -> int:
        return len(self.dl._indices_sampler())

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        dl = self.dl
        seed, epoch = dl.seed, dl._current_epoch
        for pos, i in enumerate(dl._indices_sampler()):
            yield int(i), (seed, epoch, pos)


class _EpochPermutation(Sampler):
    """A permutation of ``range(n)`` from ``numpy.random.default_rng((seed, epoch))``."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool):
        self.n, self.seed, self.epoch, self.shuffle = n, seed, epoch, shuffle

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        return iter(np.random.default_rng((self.seed, self.epoch)).permutation(self.n).tolist())


class TfmdDL:
    """Batches of ``(xb, yb)``: float32 NCHW on ``device`` after ``batch_tfms``, int64 labels.

    ``train=True`` shuffles and applies random transforms. ``batch_tfms`` is read at iteration time
    (the learner appends ``Normalize`` to it). ``sampler`` may be replaced (e.g. a
    ``DistributedSampler``); ``set_epoch`` re-seeds shuffling and augmentation (it also advances by
    one after every pass, so epochs differ without it).
    """

    def __init__(
        self, dataset: ImageDataset, bs: int = 64, train: bool = False,
        batch_tfms: list[BatchTransform] | None = None, device: torch.device | str | None = None,
        num_workers: int | None = None, drop_last: bool | None = None, seed: int | None = None,
        with_labels: bool = True, persistent_workers: bool = True,
    ):
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ValueError(f"bs must be a positive int, got {bs!r}")
        num_workers = default_num_workers() if num_workers is None else num_workers
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        self.dataset, self.bs, self.train, self.num_workers = dataset, bs, train, num_workers
        self.batch_tfms = batch_tfms if batch_tfms is not None else []
        self.device = _check_device(device) if device is not None else default_device()
        self.drop_last = drop_last  # None: automatic, see the property
        self.seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
        self.with_labels, self.persistent_workers = with_labels, persistent_workers
        self._sampler: Sampler | None = None
        self._epoch, self._current_epoch = 0, 0
        self._loader: DataLoader | None = None
        self._loader_key: tuple | None = None

    @property
    def drop_last(self) -> bool:
        """Drop a last partial batch? Default: on train (BatchNorm dislikes a batch of 1), unless it is the only one."""
        if self._drop_last is not None:
            return self._drop_last
        return self.train and len(self._indices_sampler()) > self.bs

    @drop_last.setter
    def drop_last(self, value: bool | None) -> None:
        self._drop_last = value
        self._loader = None

    # -- sampling -------------------------------------------------------------------------------
    @property
    def sampler(self) -> Sampler | None:
        """A user-set index sampler (None: our own seeded shuffle on train, in order on valid)."""
        return self._sampler

    @sampler.setter
    def sampler(self, sampler: Sampler | None) -> None:
        self._sampler = sampler
        self._loader = None

    def set_epoch(self, epoch: int) -> None:
        """Seed shuffling and augmentation for ``epoch`` (and forward it to a user sampler)."""
        self._epoch = int(epoch)
        if self._sampler is not None and hasattr(self._sampler, "set_epoch"):
            self._sampler.set_epoch(epoch)

    def _indices_sampler(self) -> Sampler:
        if self._sampler is not None:
            return self._sampler
        return _EpochPermutation(len(self.dataset), self.seed, self._current_epoch, self.train)

    # -- iteration ------------------------------------------------------------------------------
    def __len__(self) -> int:
        n = len(self._indices_sampler())
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def _torch_loader(self) -> DataLoader:
        ds, workers = self.dataset, self.num_workers
        in_workers = (self.device.type == "cpu" and workers > 0 and bool(self.batch_tfms)
                      and all(isinstance(t, BatchTransform) for t in self.batch_tfms))
        # workers hold copies of the dataset and batch transforms: rebuild them when those change
        key = (self.bs, self.drop_last, workers, self.device.type, id(self._sampler), id(ds), ds.train,
               ds.on_bad_image, tuple(repr(t) for t in ds.item_tfms), len(ds), self.train,
               tuple(id(t) for t in self.batch_tfms) if in_workers else None)
        if self._loader is None or self._loader_key != key:
            collate = _Collate(list(self.batch_tfms) if in_workers else None, self.train)
            self._loader = DataLoader(
                self.dataset, batch_size=self.bs, sampler=_SeededSampler(self), drop_last=self.drop_last,
                collate_fn=collate, num_workers=workers, pin_memory=self.device.type == "cuda",
                persistent_workers=self.persistent_workers and workers > 0,
                worker_init_fn=_worker_init if workers > 0 else None,
                prefetch_factor=4 if workers > 0 else None,
            )
            self._loader_key = key
        return self._loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        self._current_epoch = self._epoch
        self._epoch += 1
        for xb, yb, key in self._torch_loader():
            xb = xb.to(self.device, non_blocking=True)
            if xb.dtype == torch.uint8:  # not transformed in a worker: do it here, on the device
                xb = apply_batch_tfms(xb, self.batch_tfms, self.train, generator=_batch_generator(key))
            yield (xb, yb.to(self.device, non_blocking=True)) if self.with_labels else (xb,)

    def one_batch(self) -> tuple[torch.Tensor, ...]:
        """The first batch of a pass (in a worker-free way, so it is cheap to call)."""
        if len(self) == 0:
            raise ValueError(f"this DataLoader has no batches ({len(self.dataset)} items, bs={self.bs})")
        idx = list(self._indices_sampler())[: self.bs]
        xb, yb, key = _Collate()([self.dataset[(i, (self.seed, self._epoch, p))] for p, i in enumerate(idx)])
        xb = apply_batch_tfms(xb.to(self.device), self.batch_tfms, self.train, generator=_batch_generator(key))
        return (xb, yb.to(self.device)) if self.with_labels else (xb,)

    def to(self, device: torch.device | str) -> TfmdDL:
        self.device = _check_device(device)
        return self

    def state_dict(self) -> dict[str, int]:
        """What a checkpoint needs to resume the same shuffling and augmentation: seed and next epoch."""
        return {"seed": self.seed, "epoch": self._epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]))

    def __repr__(self) -> str:
        return (f"TfmdDL({len(self.dataset)} items, bs={self.bs}, train={self.train}, "
                f"num_workers={self.num_workers}, device={self.device})")


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
        ds = ImageDataset(items, labels, self.vocab, self.item_tfms, train=False, on_bad_image=self.train_ds.on_bad_image)
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
        fig = _show_batch(dl or self.train, self.vocab, max_n=max_n, nrows=nrows, ncols=ncols, figsize=figsize)
        return fig if return_fig else None

    def summary(self, print_it: bool = True) -> str | None:
        """Walk one item through the pipeline, step by step, and say where it breaks.

        Prints the report (and returns None, so a notebook shows it once); ``print_it=False`` returns it.
        """
        text = _summary(self)
        if not print_it:
            return text
        print(text)
        return None

    def __repr__(self) -> str:
        return (f"DataLoaders(train={len(self.train_ds)} items, valid={len(self.valid_ds)} items, "
                f"c={self.c}, vocab={self.vocab[:10]}{'...' if self.c > 10 else ''}, device={self.device})")


# -- factories ------------------------------------------------------------------------------------
def _resolve_files(path: Path, fnames: Sequence[Any]) -> list[Path]:
    """Paths as given when they exist, else relative to ``path``; missing files are an error."""
    out, missing = [], []
    for f in fnames:
        p = Path(f)
        if not p.exists() and not p.is_absolute() and (path / p).exists():
            p = path / p
        if not p.exists():
            missing.append(str(f))
        out.append(p)
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) not found (relative to {str(path)!r}): {missing[:5]}")
    return out


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
        items = _resolve_files(path, fnames)
        if len(labels) != len(items):
            raise ValueError(f"from_lists: {len(items)} fnames but {len(labels)} labels")
        return cls._build(path, items, [str(x) for x in labels], RandomSplitter(valid_pct, seed), seed=seed, **kwargs)

    @classmethod
    def from_path_func(cls, path: str | Path, fnames: Sequence[Any], label_func: Callable[[Path], Any],
                       valid_pct: float = 0.2, seed: int | None = None, **kwargs: Any) -> ImageDataLoaders:
        """Labels from ``label_func(path_of_file)``, computed once in this process (lambdas are fine)."""
        path = Path(path)
        items = _resolve_files(path, fnames)
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
        """
        if label_delim is not None:
            raise NotImplementedError("multi-label (label_delim) is not supported yet")
        path = Path(path)
        fn, lab = _column(df, fn_col, "fn_col"), _column(df, label_col, "label_col")
        base = path / folder if folder else path
        names = [f"{v}{suff}" for v in df[fn].tolist()]
        items = _resolve_files(base, names)
        labels = df[lab].tolist()
        bad = [i for i, v in enumerate(labels) if v is None or (isinstance(v, float) and math.isnan(v))]
        if bad:
            raise ValueError(f"from_df: column {lab!r} has no label for {names[bad[0]]!r} (and {len(bad) - 1} more)")
        if valid_col is not None:
            vc = _column(df, valid_col, "valid_col")
            splitter: Callable = IndexSplitter([bool(v) for v in df[vc].tolist()])
        else:
            splitter = RandomSplitter(valid_pct, seed)
        return cls._build(path, items, [str(v) for v in labels], splitter, seed=seed, **kwargs)

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
        cls, path: Path, items: list[Path], labels: list[str], splitter: Callable, *, seed: int | None = None,
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
        vocab = make_vocab([labels[i] for i in sorted(used)], vocab)
        if len(vocab) < 2:
            raise ValueError(f"only one class {vocab!r} found under {str(path)!r}: a classifier needs at least two")
        train_classes = {labels[i] for i in train_idx}
        missing = [v for v in vocab if v not in train_classes]
        if missing:
            warnings.warn(f"classes {missing!r} have no training images under {str(path)!r}", stacklevel=3)
        index = {v: k for k, v in enumerate(vocab)}
        y = [index.get(lab, -1) for lab in labels]  # -1 only for files outside the split (never used)
        item_tfms, batch_tfms = _as_list(item_tfms), _as_list(batch_tfms)
        for t in item_tfms:
            if not callable(t):
                raise TypeError(f"item_tfms must be item transforms such as Resize(224), got {t!r}")
        for t in batch_tfms:
            if not callable(t):
                raise TypeError(f"batch_tfms must be batch transforms such as aug_transforms(), got {t!r}")

        def ds(idx: list[int], train: bool) -> ImageDataset:
            return ImageDataset([items[i] for i in idx], [y[i] for i in idx], vocab, item_tfms, train, on_bad_image)

        common = dict(batch_tfms=batch_tfms, device=device, num_workers=num_workers, seed=seed)
        train_dl = TfmdDL(ds(train_idx, True), bs=bs, train=shuffle, drop_last=drop_last, **common)
        valid_dl = TfmdDL(ds(valid_idx, False), bs=val_bs or bs, train=False, **common)
        train_dl.dataset.train = True  # random item transforms even when shuffle=False
        return cls(train_dl, valid_dl, path=path, label_func=label_func)


def _column(df: Any, col: int | str, arg: str) -> Any:
    """The column name for ``col`` (a name or a position), or an error naming what exists."""
    cols = list(df.columns)
    if isinstance(col, int) and not isinstance(col, bool) and col not in cols:
        if not -len(cols) <= col < len(cols):
            raise ValueError(f"{arg}={col!r} is out of range: the table has {len(cols)} columns {cols!r}")
        return cols[col]
    if col not in cols:
        raise ValueError(f"{arg}={col!r} is not a column of the table; columns are {cols!r}")
    return col


def _warn_empty_class_folders(path: Path, train: str, valid: str, split_by_folder: bool, items: list[Path]) -> None:
    """A class folder without images is left out of the vocab: say so instead of dropping it silently."""
    tops = [path / train, path / valid] if split_by_folder else [path]
    used = {p.parent for p in items}
    for top in tops:
        for d in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if split_by_folder or d.name not in (train, valid):
                if d not in used and not any(u.is_relative_to(d) for u in used):
                    warnings.warn(f"class folder {str(d)!r} has no images; it is not a class", stacklevel=3)


# -- show_batch and summary -----------------------------------------------------------------------
def _decoded(xb: torch.Tensor, tfms: Sequence[BatchTransform]) -> torch.Tensor:
    """Undo ``Normalize`` for display; clip to [0, 1]."""
    for t in tfms:
        if isinstance(t, Normalize):
            xb = t.decode(xb)
    return xb.clamp(0, 1)


def _show_batch(dl: TfmdDL, vocab: Sequence[str], max_n: int = 9, nrows: int | None = None,
                ncols: int | None = None, figsize: tuple[float, float] | None = None):
    import matplotlib.pyplot as plt

    batch = dl.one_batch()
    xb = _decoded(batch[0], dl.batch_tfms)[:max_n].float().cpu()
    yb = batch[1][: len(xb)].cpu().tolist() if len(batch) > 1 else [None] * len(xb)
    n = len(xb)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = nrows or math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (3 * ncols, 3 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(xb[k].permute(1, 2, 0).numpy())
            if yb[k] is not None and yb[k] >= 0:
                ax.set_title(str(vocab[yb[k]]))
    fig.tight_layout()
    return fig


def _summary(dls: DataLoaders) -> str:
    lines = [f"Items: {len(dls.train_ds)} train, {len(dls.valid_ds)} valid; {dls.c} classes: {dls.vocab[:20]}"]
    ds, step = dls.train_ds, "picking an item"
    try:
        if len(ds) == 0:
            raise ValueError("the training set is empty")
        item, label = ds.items[0], ds.vocab[ds.labels[0]] if ds.labels else None
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
