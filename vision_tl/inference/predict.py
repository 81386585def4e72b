"""Predict with a trained model: one image, many images, and test-time augmentation.

A ``Predictor`` holds only what prediction needs (model, vocab, the ``Preprocess`` spec), so an
in-memory learner and a loaded ``.vtl`` file predict through the same code (``predict_step``) and
give the same answers. One image costs a decode, a resize and one forward pass: no
DataLoader is built per call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.images import load_rgb
from ..data.item_tfms import apply_item_tfms, draft_size_for, limit_worker_threads
from ..data.tfmd_dl import available_cpus, default_num_workers
from ..models.preprocess import Preprocess
from .pipeline import decode_threads_for, iter_batches
from .runners import Runner, TorchRunner

Item = Any  # str | Path | bytes | PIL.Image.Image | np.ndarray | torch.Tensor


def _as_stats(normalize: Any) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """``(mean, std)`` from a ``Normalize``, anything with ``.mean``/``.std``, a ``(mean, std)`` pair, or ``None``."""
    if normalize is None:
        return None, None
    if hasattr(normalize, "mean") and hasattr(normalize, "std"):
        mean, std = normalize.mean, normalize.std
    else:
        try:
            mean, std = normalize
        except (TypeError, ValueError):
            raise ValueError(f"normalize must be a Normalize or a (mean, std) pair, got {normalize!r}") from None
    return tuple(torch.as_tensor(mean).flatten().tolist()), tuple(torch.as_tensor(std).flatten().tolist())


def _array_to_hwc(arr: np.ndarray, what: str, chw: bool = False) -> np.ndarray:
    """Check and reshape a uint8 image array to contiguous RGB ``(H, W, 3)``."""
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0-255), got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3 and chw:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"{what} must be HxW, HxWx1 or HxWx3 (RGB), got shape {tuple(arr.shape)}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def to_rgb_array(item: Item, draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode any supported input to a uint8 RGB ``(H, W, 3)`` array.

    Accepts a path (``str``/``Path``), raw encoded bytes, a PIL image, a uint8 numpy array (HWC or
    HW) or a uint8 torch tensor (CHW, the torchvision convention, or HWC when the last dimension is
    1 or 3 and the first is not).
    """
    if isinstance(item, np.ndarray):
        return _array_to_hwc(item, "numpy image")
    if isinstance(item, torch.Tensor):
        t = item.detach().cpu()
        if t.dtype != torch.uint8:
            raise ValueError(f"tensor image must be uint8 (0-255), got dtype {t.dtype}")
        chw = t.ndim == 3 and t.shape[0] in (1, 3)
        return _array_to_hwc(t.numpy(), "tensor image", chw=chw)
    if isinstance(item, (bytearray, memoryview)):
        item = bytes(item)
    if isinstance(item, (str, Path, bytes, Image.Image)):
        return load_rgb(item, draft_size=draft_size)
    raise ValueError(
        "an image must be a path, bytes, a PIL image, a uint8 numpy array or a uint8 tensor, "
        f"got {type(item).__name__}"
    )


class _ItemsDataset(Dataset):
    """Decoded, resized images as uint8 CHW tensors; a failure is returned, not raised.

    Not ``ImageDataset``: this one takes any input ``Predictor`` accepts (arrays, tensors, bytes) and
    never substitutes another image for a bad one (each prediction must belong to its item).

    The error object travels back with the batch so that the main process re-raises it as it was
    (an exception raised inside a DataLoader worker is re-wrapped and loses its type).
    """

    def __init__(self, items: Sequence[Item], item_tfms: Sequence[Any]) -> None:
        self.items, self.item_tfms = items, list(item_tfms)
        self.draft_size = draft_size_for(self.item_tfms)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, Exception | None]:
        try:
            img = to_rgb_array(self.items[i], self.draft_size)
            img = apply_item_tfms(img, self.item_tfms, train=False)
        except (ValueError, OSError) as e:  # ImageError is a ValueError
            return None, e
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1), None


def _collate(batch: list[tuple[torch.Tensor | None, Exception | None]]) -> tuple[torch.Tensor | None, Any]:
    """Stack the images, or pass on the first item's error (collate may run in a worker)."""
    for _, err in batch:
        if err is not None:
            return None, err
    return torch.stack([x for x, _ in batch]), None


def _batches(dl: DataLoader) -> Iterator[torch.Tensor]:
    """The batches of a ``_ItemsDataset`` loader; an item's error is raised here, in the main process."""
    for xb, err in dl:
        if err is not None:
            raise err
        yield xb


def _worker_init(worker_id: int) -> None:
    limit_worker_threads()


def _default_workers(n_items: int, bs: int, device: torch.device) -> int:
    """Worker processes pay off only beyond a couple of batches and with cores to spare.

    On the CPU the forward pass already uses every core (decoding is ~1/4 of the work at 64 px and
    much less at 224 px), so with 4 cores or fewer the decode runs in-process (measured faster on
    2 cores: 640 vs 510 img/s for resnet18 at 64 px).
    """
    if n_items <= 2 * bs:
        return 0
    if device.type == "cpu":  # the training loaders' rule (none with <= 4 cores, else a quarter), at most 4
        return min(4, default_num_workers(device))
    return max(0, min(4, available_cpus() - 1))


class VocabOnlyDls:
    """``Predictor.dls``: the vocab a fastai user reads as ``learn.dls.vocab`` (there is no data to load)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = list(vocab)

    @property
    def c(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"VocabOnlyDls(vocab={self.vocab!r})"


class Predictor:
    """Everything prediction needs, and nothing else: vocab, the ``Preprocess`` spec and a runner.

    The predictor decodes and resizes images (``preprocess``), hands uint8 batches to its ``runner``
    (``inference/runners.py``: torch, onnxruntime, ...) and turns probabilities into labels. The torch
    ``model`` is kept whatever the runner, for Grad-CAM and to export again.

    Args:
        model: the classifier (body + head); it is only read, and put in eval mode per call.
        vocab: class names, index ``i`` is output ``i``.
        item_tfms: the item transforms, applied with ``train=False`` (the validation transforms).
        normalize: a ``Normalize``, a ``(mean, std)`` pair, or ``None``.
        batch_tfms: other batch transforms, applied with ``train=False`` before normalizing (on
            valid they are deterministic: e.g. ``aug_transforms(size=224)`` resizes, the rest is identity).
        device: where to run; ``None`` means where the model's parameters are.
        model_config: the ``ModelConfig`` the model was built from (needed to export again).
        amp: on CUDA, run the forward pass under float16 autocast (probabilities stay float32).
        channels_last: convert the model to channels-last memory format (about 2x faster convolutions
            on CPU with oneDNN, and on CUDA tensor cores); it changes the model in place, so
            ``from_learner`` leaves it off and ``load_learner`` turns it on.
        activation: the final activation, ``"softmax"``, ``"sigmoid"`` or ``"none"``.
        multi_label: each image has a set of labels (the activation is then ``"sigmoid"``): ``predict``
            returns ``(labels, bool mask, probs)`` with the labels whose probability > ``thresh``.
        thresh: the multi-label decision threshold (saved in the export).
        runner: what runs the batches; default a ``TorchRunner`` of ``model`` on ``device``.

    ``manifest`` is the ``.vtl`` manifest of a predictor from ``load_learner`` (None otherwise).

    ``item_tfms``, ``batch_tfms`` and ``normalize`` are views of ``self.spec`` (a ``Preprocess``);
    setting one replaces the spec (with a runner other than torch, whose graph has the batch side
    built in, only ``item_tfms`` may change).
    """

    def __init__(
        self,
        model: nn.Module,
        vocab: Sequence[str],
        item_tfms: Sequence[Any],
        normalize: Any,
        device: str | torch.device | None = None,
        model_config: Any = None,
        amp: bool = True,
        batch_tfms: Sequence[Any] | None = None,
        channels_last: bool = False,
        activation: str | None = None,
        multi_label: bool = False,
        thresh: float = 0.5,
        runner: Runner | None = None,
    ) -> None:
        if not 0 < thresh < 1:
            raise ValueError(f"thresh must be in (0, 1), got {thresh!r}")
        activation = activation or ("sigmoid" if multi_label else "softmax")
        if multi_label and activation != "sigmoid":
            raise ValueError(f"a multi-label predictor needs activation='sigmoid', got {activation!r}")
        self.multi_label, self.thresh = bool(multi_label), float(thresh)
        self.model = model
        self.vocab = [str(v) for v in vocab]
        mean, std = _as_stats(normalize)
        size = None if item_tfms else getattr(model_config, "input_size", None)
        self._spec = Preprocess(list(item_tfms), list(batch_tfms or []), mean, std, size, activation)
        self.model_config = model_config
        self.manifest: dict[str, Any] | None = None  # the .vtl manifest, for a predictor loaded from a file
        self.amp = amp
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if runner is None:
            if device is None:
                param = next(model.parameters(), None)
                device = param.device if param is not None else torch.device("cpu")
            runner = TorchRunner(model, self._spec, device, amp, channels_last)
        self.runner = runner

    @classmethod
    def from_spec(cls, model: nn.Module, vocab: Sequence[str], spec: Preprocess, **kwargs: Any) -> Predictor:
        """A predictor for ``model`` preprocessing as ``spec`` says (``kwargs``: device, model_config, runner, ...)."""
        runner = kwargs.pop("runner", None)
        out = cls(model, vocab, [], None, activation=spec.activation, **kwargs)
        out.spec = spec
        if runner is not None:
            out.runner = runner
        return out

    @property
    def spec(self) -> Preprocess:
        """The preprocessing spec (item transforms, batch transforms, normalization, input size, activation)."""
        return self._spec

    @spec.setter
    def spec(self, spec: Preprocess) -> None:
        if isinstance(self.runner, TorchRunner):
            self.runner = TorchRunner(self.model, spec, self.runner.device, self.amp, self.channels_last)
        elif (spec.batch_tfms, spec.mean, spec.std, spec.activation) != (
                self._spec.batch_tfms, self._spec.mean, self._spec.std, self._spec.activation):
            raise ValueError(f"the {self.backend} backend has the batch transforms, normalization and activation "
                             "built into its graph: load with backend='torch' to change them")
        self._spec = spec

    @property
    def backend(self) -> str:
        """What runs the forward pass: the runner's name (``"torch"``, ``"onnxruntime"``, ...)."""
        return self.runner.name

    @property
    def device(self) -> torch.device:
        """Where the runner runs."""
        return self.runner.device

    @property
    def precision(self) -> str:
        """The arithmetic of the runner's forward pass: ``"fp32"``, or ``"int8"`` (``load_learner(precision=...)``)."""
        return getattr(self.runner, "precision", "fp32")

    @property
    def num_threads(self) -> int:
        """Threads of the runner's intra-op pool."""
        return self.runner.num_threads

    @classmethod
    def from_learner(cls, learn: Any) -> Predictor:
        """The predictor of an in-memory learner: its model, vocab and ``learn.preprocess``; multi-label
        when ``dls.multi_label``, with the threshold of the loss (``BCEWithLogitsLossFlat.thresh``)."""
        model = getattr(learn, "raw_model", learn.model)  # not the DDP / torch.compile wrapper
        multi = bool(getattr(learn.dls, "multi_label", False))
        return cls.from_spec(model, learn.dls.vocab, learn.preprocess, model_config=getattr(learn, "model_config", None),
                             multi_label=multi, thresh=float(getattr(learn.loss_func, "thresh", 0.5)) if multi else 0.5)

    @property
    def activation(self) -> str:
        """The final activation every backend applies (``"softmax"``, ``"sigmoid"`` or ``"none"``)."""
        return self.spec.activation

    @property
    def item_tfms(self) -> list[Any]:
        return self.spec.item_tfms

    @item_tfms.setter
    def item_tfms(self, value: Sequence[Any]) -> None:
        self.spec = replace(self.spec, item_tfms=list(value), input_size=None)

    @property
    def batch_tfms(self) -> list[Any]:
        return self.spec.batch_tfms

    @batch_tfms.setter
    def batch_tfms(self, value: Sequence[Any]) -> None:
        self.spec = replace(self.spec, batch_tfms=list(value))

    @property
    def normalize(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` of the normalization, or ``None``; set it to a ``Normalize``, a pair or ``None``."""
        return None if self.spec.mean is None else (self.spec.mean, self.spec.std)

    @normalize.setter
    def normalize(self, value: Any) -> None:
        self.spec = self.spec.with_stats(*_as_stats(value))

    @property
    def draft_size(self) -> tuple[int, int] | None:
        return draft_size_for(self.item_tfms)

    @property
    def dls(self) -> VocabOnlyDls:
        """What fastai code reads of a loaded learner's data: ``predictor.dls.vocab`` (and ``.c``)."""
        return VocabOnlyDls(self.vocab)

    @property
    def c(self) -> int:
        """Number of classes."""
        return len(self.vocab)

    def to(self, device: str | torch.device) -> Predictor:
        """Run on ``device`` (the runner says whether it can); returns ``self``."""
        self.runner = self.runner.to(device)
        return self

    def preprocess(self, item: Item) -> np.ndarray:
        """Decode ``item`` and apply the validation item transforms: uint8 ``(H, W, 3)``."""
        return apply_item_tfms(to_rgb_array(item, self.draft_size), self.item_tfms, train=False)

    def forward_uint8(self, xb: torch.Tensor) -> torch.Tensor:
        """Probabilities (float32, on the CPU) for a uint8 NCHW batch: ``self.runner(xb)``."""
        return self.runner(xb)

    def predict(self, item: Item) -> tuple[Any, Any, torch.Tensor]:
        """One image, like fastai's ``learn.predict``: ``(label, index, probs)`` (``index`` a 0-d tensor), or
        for a multi-label model ``(labels: list[str], mask: bool tensor (c,), probs)`` with the labels
        whose probability is above ``thresh``."""
        img = self.preprocess(item)
        if not img.flags.writeable:  # e.g. a read-only array straight from PIL
            img = img.copy()
        probs = self.forward_uint8(torch.from_numpy(img).permute(2, 0, 1)[None])[0]
        if self.multi_label:
            mask = probs > self.thresh
            return self.decode(probs[None])[0], mask, probs
        if self.activation == "none":  # regression: the outputs are the prediction (fastai returns them thrice)
            return probs, probs, probs
        idx = probs.argmax()
        return self.vocab[int(idx)], idx, probs

    def top_k(self, item: Item, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely ``(label, probability)`` pairs for one image, most likely first."""
        if not 1 <= k <= self.c:
            raise ValueError(f"k must be in [1, {self.c}] (the number of classes), got {k}")
        probs = self.predict(item)[2]
        values, idxs = probs.topk(k)
        return [(self.vocab[i], float(p)) for p, i in zip(values.tolist(), idxs.tolist())]

    def predict_batch(
        self,
        items: Sequence[Item],
        bs: int = 64,
        num_workers: int | None = None,
        progress: bool = True,
        distributed: bool = False,
    ) -> torch.Tensor:
        """Probabilities ``(len(items), c)`` for many images, decoded while the model runs.

        ``num_workers=None``: on the CPU, threads decode one batch ahead of the forward pass
        (``inference/pipeline.py`` says how many and why); on a GPU, DataLoader worker processes
        (pinned memory, non-blocking copies). ``num_workers=N`` forces N worker processes (0: decode
        in this thread, one batch after the other). An unreadable image
        raises an ``ImageError`` naming it. Labels are ``[self.vocab[i] for i in probs.argmax(1)]``.

        ``distributed=True`` under ``torchrun``: each process predicts its share of ``items`` and every
        process gets all the probabilities, in order (``inference/distributed.py``).
        """
        if distributed:
            from .distributed import predict_distributed

            return predict_distributed(self, items, bs=bs, num_workers=num_workers, progress=progress)
        items = list(items)
        if bs < 1:
            raise ValueError(f"bs must be >= 1, got {bs}")
        if not items:
            return torch.empty(0, self.c)
        ds = _ItemsDataset(items, self.item_tfms)
        if num_workers is None and self.device.type == "cpu" and len(items) > bs:  # decode overlaps the forward
            batches = iter_batches(ds, bs, decode_threads_for(), _collate)
        else:
            workers = _default_workers(len(items), bs, self.device) if num_workers is None else num_workers
            batches = _batches(DataLoader(
                ds, batch_size=bs, shuffle=False, num_workers=workers, collate_fn=_collate,
                pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init if workers > 0 else None,
            ))
        out = []
        total = -(-len(items) // bs)
        for xb in tqdm(batches, total=total, desc="predict", disable=not progress, leave=False):
            out.append(self.forward_uint8(xb))
        return torch.cat(out)

    def decode(self, probs: torch.Tensor) -> list[Any]:
        """Labels for a ``(n, c)`` probability tensor: the arg-max's, or (multi-label) the list of labels
        above ``thresh`` for each row."""
        if self.multi_label:
            return [[self.vocab[i] for i in row.nonzero().flatten().tolist()] for row in probs > self.thresh]
        return [self.vocab[i] for i in probs.argmax(1).tolist()]

    def grad_cam(self, item: Item, target: int | str | None = None, layer: nn.Module | None = None) -> np.ndarray:
        """The Grad-CAM heatmap ``(H, W)`` in ``[0, 1]`` for ``item`` (see ``vision_tl.inference.cam``)."""
        from .cam import grad_cam

        return grad_cam(self, item, target, layer)

    def show_cam(self, item: Item, target: int | str | None = None, layer: nn.Module | None = None,
                 **kwargs: Any) -> Any:
        """Draw ``item`` with its Grad-CAM heatmap on top; returns the matplotlib axes."""
        from .cam import show_cam

        return show_cam(self, item, target, layer, **kwargs)

    def export(self, fname: str | Path) -> Path:
        """Write this predictor to a ``.vtl`` file (``export.export_predictor``, which imports this module
        for type hints only)."""
        from .export import export_predictor

        return export_predictor(self, fname)

    def __repr__(self) -> str:
        arch = getattr(self.model_config, "arch", type(self.model).__name__)
        multi = f", multi-label thresh={self.thresh}" if self.multi_label else ""
        backend = "" if self.backend == "torch" else f", backend={self.backend}, threads={self.num_threads}"
        backend += "" if self.precision == "fp32" else f", precision={self.precision}"
        return f"Predictor({arch}, {self.c} classes{multi}, device={self.device}{backend})"
