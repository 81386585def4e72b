"""``TfmdDL``: batches of one dataset, moved to the device once and transformed there, seeded per item.

Flow: the dataset decodes a file (JPEG draft mode when shrinking) and applies the item transforms in
a worker, returning uint8 HWC; batches are collated to uint8 NCHW, moved to the device once
(pinned, non-blocking on CUDA) and only there turned to float by the batch transforms. On a CPU
device the workers run the batch transforms as well, leaving the main process to the model.

Reproducibility: the sampler hands every index to the workers together with a per-item seed derived
from ``(seed, epoch, position)``, so a seeded run draws the same crops whatever the number of
workers; shuffling is seeded from ``(seed, epoch)`` and each batch's transforms from its first item.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import traceback
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from .batch_tfms import BatchTransform, Normalize, apply_batch_tfms
from .datasets import ImageDataset, collate_uint8
from .item_tfms import limit_worker_threads

__all__ = ["TfmdDL", "available_cpus", "default_device", "default_num_workers"]


def default_device() -> torch.device:
    """CUDA if present, else Apple MPS, else CPU (the one default for DataLoaders and Learners)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_cpus() -> int:
    """The cores this process may run on (its affinity: a container's or ``taskset``'s limit), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def default_num_workers(device: torch.device | str | None = None) -> int:
    """Worker processes for a loader that feeds ``device`` (``None``: an accelerator's rule).

    With an accelerator the cores are free for decoding: one worker per core, at most 8. When the
    model trains on the CPU it already uses every core (torch's intra-op threads), and workers
    compete with it: on 2 cores ``fine_tune(1)`` of resnet18 at 64 px took 2.36 s with 0 workers and
    2.94 s with 2, with or without augmentation, and resnet10t 1.84 vs 2.30 s (BENCHMARKS.md, issue
    19). So a CPU device with 4 cores or fewer decodes in the main process, and a bigger CPU gives
    the loader a quarter of its cores (the rule prediction uses, ``inference/predict.py``).
    """
    cpus = available_cpus()
    if device is not None and torch.device(device).type == "cpu":
        return 0 if cpus <= 4 else min(cpus // 4, 8)
    return min(cpus, 8)


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

    def __init__(self, batch_tfms: list[BatchTransform] | None = None, train: bool = False,
                 normalize: Normalize | None = None):
        self.batch_tfms, self.train, self.normalize = batch_tfms, train, normalize

    def __call__(self, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, Any] | _Failed:
        failed = next((b for b in batch if isinstance(b, _Failed)), None)
        if failed is not None:  # an item's error (in a worker): pass it on to the main process
            return failed
        try:
            x, y = collate_uint8(batch)
            key = batch[0][2] if len(batch[0]) > 2 else None
            if self.batch_tfms is not None:
                x = apply_batch_tfms(x, self.batch_tfms, self.train, generator=_batch_generator(key),
                                     normalize=self.normalize)
        except Exception as e:  # noqa: BLE001 - in a worker, carried back whole where possible
            if (failed := _carried(e)) is None or torch.utils.data.get_worker_info() is None:
                raise
            return failed
        return x, y, key


class _Failed:
    """An error raised for a batch in a DataLoader worker, carried back as data.

    torch re-raises a worker's exception by calling its class with a new multi-line message, which
    loses everything but the text (an ``ImageError``'s file, for one). Carried as an object, the error
    arrives in the main process as it was raised; the worker's traceback comes along as a note.
    """

    def __init__(self, error: Exception):
        self.error, self.where = error, "".join(traceback.format_exception(error))

    def reraise(self) -> None:
        self.error.add_note(f"(raised in a DataLoader worker process)\n{self.where}")
        raise self.error


def _carried(e: Exception) -> _Failed | None:
    """``e`` as a ``_Failed`` when it survives pickling unchanged (type and message), else None."""
    try:
        back = pickle.loads(pickle.dumps(e))
    except Exception:  # noqa: BLE001 - not picklable: let torch report it its own way
        return None
    return _Failed(e) if type(back) is type(e) and str(back) == str(e) else None


class _CarryErrors(Dataset):
    """``dataset`` for worker processes: an item's exception is returned (as ``_Failed``), not raised."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except Exception as e:  # noqa: BLE001 - re-raised as it was in the main process
            failed = _carried(e)
            if failed is None:
                raise
            return failed


def _worker_init(worker_id: int) -> None:
    """Single-threaded OpenCV; numpy's global RNG seeded per worker (torch seeds only torch and random),
    so custom transforms that use ``np.random`` do not repeat the same draws in every worker."""
    limit_worker_threads()
    np.random.seed(torch.initial_seed() % 2**32)


def _stop_workers(procs: list[Any], parent: int) -> None:
    """Terminate a finished loader's worker processes (see ``_watch_workers``).

    Only their parent may: a process forked later (a worker of another loader, a subprocess) inherits the
    finalizer, and ``is_alive`` would fail there with "can only test a child process"."""
    if os.getpid() != parent:
        return
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=1.0)


def _watch_workers(it: Any) -> None:
    """Stop ``it``'s persistent workers as soon as the iterator is garbage, whatever collects it.

    torch shuts workers down from the iterator's ``__del__`` by sending each one a message; when the
    iterator dies inside a reference cycle (a Learner and its callbacks, say), the garbage collector
    has already closed the queues that would carry the message, and torch waits 5 s per worker before
    terminating it: a 10-20 s freeze at a random later moment. A finalizer terminates them at once.
    """
    procs = list(getattr(it, "_workers", None) or [])
    if procs and it not in _WATCHED:
        _WATCHED.add(it)
        weakref.finalize(it, _stop_workers, procs, os.getpid())


_WATCHED: weakref.WeakSet = weakref.WeakSet()


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
    (a user's ``Normalize`` may be among them). ``sampler`` may be replaced (e.g. a
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
    def num_workers(self) -> int:
        """Worker processes; unless set, ``default_num_workers(self.device)``: it follows ``to(device)``."""
        return default_num_workers(self.device) if self._num_workers is None else self._num_workers

    @num_workers.setter
    def num_workers(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"num_workers must be an int >= 0, got {value!r}")
        self._num_workers = value
        self._loader = None

    @property
    def workers_set(self) -> int | None:
        """``num_workers`` as given (``None``: the device's default), which ``new`` and ``test_dl`` keep."""
        return self._num_workers

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

    def new(self, dataset: ImageDataset | None = None, bs: int | None = None,
            batch_tfms: list[BatchTransform] | None = None, device: torch.device | str | None = None,
            num_workers: int | None = None) -> TfmdDL:
        """A loader like this one (mode, seed, drop_last setting, labels, workers) with what is given changed."""
        return TfmdDL(
            self.dataset if dataset is None else dataset, bs=bs or self.bs, train=self.train,
            batch_tfms=list(self.batch_tfms) if batch_tfms is None else batch_tfms,
            device=self.device if device is None else device,
            num_workers=self._num_workers if num_workers is None else num_workers, drop_last=self._drop_last,
            seed=self.seed, with_labels=self.with_labels, persistent_workers=self.persistent_workers,
        )

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

    def _torch_loader(self, normalize: Normalize | None = None) -> DataLoader:
        ds, workers = self.dataset, self.num_workers
        in_workers = (self.device.type == "cpu" and workers > 0 and (bool(self.batch_tfms) or normalize is not None)
                      and all(isinstance(t, BatchTransform) for t in self.batch_tfms))
        # workers hold copies of the dataset and batch transforms: rebuild them when those change
        key = (self.bs, self.drop_last, workers, self.device.type, id(self._sampler), id(ds), ds.train,
               ds.on_bad_image, tuple(repr(t) for t in ds.item_tfms), len(ds), self.train,
               (tuple(id(t) for t in self.batch_tfms), normalize and (normalize.mean, normalize.std))
               if in_workers else None)
        if self._loader is None or self._loader_key != key:
            collate = _Collate(list(self.batch_tfms) if in_workers else None, self.train,
                               normalize if in_workers else None)
            self._loader = DataLoader(
                _CarryErrors(self.dataset) if workers > 0 else self.dataset, batch_size=self.bs, sampler=_SeededSampler(self), drop_last=self.drop_last,
                collate_fn=collate, num_workers=workers, pin_memory=self.device.type == "cuda",
                persistent_workers=self.persistent_workers and workers > 0,
                worker_init_fn=_worker_init if workers > 0 else None,
                prefetch_factor=4 if workers > 0 else None,
                # its own generator: creating an iterator must not draw from torch's global RNG, or the
                # model's randomness (dropout) would depend on num_workers and on where a run resumed
                generator=torch.Generator().manual_seed(self.seed),
            )
            self._loader_key = key
        return self._loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.batches()

    def batches(self, normalize: Normalize | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """One pass (what iterating does), the images normalized by ``normalize`` where they become float:
        in the workers when the device is the CPU, else on the device (fused with uint8 -> float when
        there are no batch transforms). The Learner passes its preprocessing spec's ``Normalize`` here."""
        self._current_epoch = self._epoch
        self._epoch += 1
        it = iter(self._torch_loader(normalize))
        _watch_workers(it)
        for batch in it:
            if isinstance(batch, _Failed):
                batch.reraise()
            xb, yb, key = batch
            xb = xb.to(self.device, non_blocking=True)
            if xb.dtype == torch.uint8:  # not transformed in a worker: do it here, on the device
                xb = apply_batch_tfms(xb, self.batch_tfms, self.train, generator=_batch_generator(key),
                                      normalize=normalize)
            yield (xb, yb.to(self.device, non_blocking=True)) if self.with_labels else (xb,)

    def one_batch(self, unique: bool = False) -> tuple[torch.Tensor, ...]:
        """The first batch of a pass (in a worker-free way, so it is cheap to call).

        ``unique=True``: the batch's first item repeated, each copy with its own random transforms.
        """
        if len(self) == 0:
            raise ValueError(f"this DataLoader has no batches ({len(self.dataset)} items, bs={self.bs})")
        idx = list(self._indices_sampler())[: self.bs]
        if unique:
            idx = [idx[0]] * len(idx)
        xb, yb, key = _Collate()([self.dataset[(i, (self.seed, self._epoch, p))] for p, i in enumerate(idx)])
        xb = apply_batch_tfms(xb.to(self.device), self.batch_tfms, self.train, generator=_batch_generator(key))
        return (xb, yb.to(self.device)) if self.with_labels else (xb,)

    def show_batch(self, max_n: int = 9, nrows: int | None = None, ncols: int | None = None,
                   figsize: tuple[float, float] | None = None, unique: bool = False, return_fig: bool = False,
                   **kwargs: Any):
        """A grid of this loader's first batch titled with the labels (fastai's ``dls.train.show_batch``);
        ``unique=True`` shows one item under different random transforms. None, or the figure."""
        from .show import draw_batch  # matplotlib only when drawing

        fig = draw_batch(self, max_n=max_n, nrows=nrows, ncols=ncols, figsize=figsize, unique=unique, **kwargs)
        return fig if return_fig else None

    def decode(self, b: Any) -> tuple:
        """fastai's ``dl.decode((x, y))``: images un-normalized to [0, 1], targets typed (``decode.py``)."""
        from .decode import decode

        return decode(self, b)

    def decode_batch(self, b: Any, max_n: int = 9) -> list[tuple]:
        """fastai's ``dl.decode_batch((x, y))``: ``(image, class name)`` per item (``decode.py``)."""
        from .decode import decode_batch

        return decode_batch(self, b, max_n)

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


def inorder_dl(dl: Any, train: bool = False, bs: int | None = None, device: Any = None) -> TfmdDL:
    """A loader over ``dl``'s items in dataset order with no batch dropped, leaving ``dl`` untouched.

    With ``train=False`` the valid-time transforms (what ``get_preds(ds_idx=0)`` needs to match the
    predictions to ``dl.dataset.items``); with ``train=True`` the random training transforms, still in
    order (for TTA), seeded from torch's global RNG. It uses ``dl``'s workers, batch transforms and device.
    """
    ds = dl.dataset
    if isinstance(ds, ImageDataset):  # the same items and targets (any kind: a subclass too), other mode
        ds = copy.copy(ds)
        ds.train = train
    out = TfmdDL(
        ds, bs=bs or dl.bs, train=train, batch_tfms=dl.batch_tfms, device=device or dl.device,
        num_workers=getattr(dl, "workers_set", dl.num_workers), drop_last=False,
        seed=int(torch.randint(2**31, (1,))) if train else 0,
        with_labels=getattr(dl, "with_labels", True), persistent_workers=False,
    )
    if train:  # TfmdDL shuffles on train: keep the dataset order
        out.sampler = SequentialSampler(range(len(ds)))
    return out
