"""Predict with a trained model: one image, many images, and test-time augmentation.

A ``Predictor`` holds only what prediction needs (model, vocab, the validation item transforms,
normalization stats), so an in-memory learner and a loaded ``.vtl`` file predict through the same
code and give the same answers. One image costs a decode, a resize and one forward pass: no
DataLoader is built per call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from tqdm.auto import tqdm

from ..data.batch_tfms import Normalize, apply_batch_tfms
from ..data.datasets import ImageDataset
from ..data.images import load_rgb
from ..data.item_tfms import apply_item_tfms, draft_size_for, limit_worker_threads
from ..data.tfmd_dl import TfmdDL

Item = Any  # str | Path | bytes | PIL.Image.Image | np.ndarray | torch.Tensor


def _as_normalize(normalize: Any) -> Normalize | None:
    """A ``Normalize`` from a ``Normalize``, anything with ``.mean``/``.std``, a ``(mean, std)`` pair, or ``None``."""
    if normalize is None or isinstance(normalize, Normalize):
        return normalize
    if hasattr(normalize, "mean") and hasattr(normalize, "std"):
        mean, std = normalize.mean, normalize.std
    else:
        try:
            mean, std = normalize
        except (TypeError, ValueError):
            raise ValueError(f"normalize must be a Normalize or a (mean, std) pair, got {normalize!r}") from None
    return Normalize(torch.as_tensor(mean).flatten().tolist(), torch.as_tensor(std).flatten().tolist())


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


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


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
    cpus = os.cpu_count() or 1
    if n_items <= 2 * bs or (device.type == "cpu" and cpus <= 4):
        return 0
    return max(0, min(4, cpus - 1 if device.type != "cpu" else cpus // 4))


class PredictorData:
    """``Predictor.dls``: the vocab a fastai user reads as ``learn.dls.vocab`` (there is no data to load)."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = list(vocab)

    @property
    def c(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"PredictorData(vocab={self.vocab!r})"


class Predictor:
    """Everything prediction needs, and nothing else: model, vocab, valid item tfms, normalization.

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
    ) -> None:
        self.model = model
        self.vocab = [str(v) for v in vocab]
        self.item_tfms = list(item_tfms)
        self.normalize = normalize
        self.batch_tfms = sorted(
            (t for t in batch_tfms or () if type(t).__name__ != "Normalize"), key=lambda t: getattr(t, "order", 50)
        )
        self.model_config = model_config
        self.amp = amp
        self.draft_size = draft_size_for(self.item_tfms)
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if device is None:
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
        self.to(device)

    @classmethod
    def from_learner(cls, learn: Any) -> Predictor:
        """The predictor of an in-memory learner: its model, vocab, item tfms and batch tfms.

        Normalization is exactly the ``Normalize`` in ``dls.batch_tfms`` (none if training had none).
        """
        dls = learn.dls
        batch_tfms = list(getattr(dls, "batch_tfms", None) or [])
        normalize = next((t for t in batch_tfms if type(t).__name__ == "Normalize"), None)
        cfg = getattr(learn, "model_config", None)
        model = getattr(learn, "raw_model", learn.model)  # not the DDP / torch.compile wrapper
        return cls(model, dls.vocab, dls.item_tfms, normalize, model_config=cfg, batch_tfms=batch_tfms)

    @property
    def normalize(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` of the normalization, or ``None``; set it to a ``Normalize``, a pair or ``None``."""
        return None if self._normalize is None else (self._normalize.mean, self._normalize.std)

    @normalize.setter
    def normalize(self, value: Any) -> None:
        self._normalize = _as_normalize(value)

    @property
    def tfms(self) -> list[Any]:
        """The valid-time batch transforms, then ``Normalize``: what ``apply_batch_tfms`` runs on a uint8 batch."""
        return [*self.batch_tfms, *([self._normalize] if self._normalize is not None else [])]

    @property
    def dls(self) -> PredictorData:
        """What fastai code reads of a loaded learner's data: ``predictor.dls.vocab`` (and ``.c``)."""
        return PredictorData(self.vocab)

    @property
    def c(self) -> int:
        """Number of classes."""
        return len(self.vocab)

    def to(self, device: str | torch.device) -> Predictor:
        """Move the model to ``device``; returns ``self``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def preprocess(self, item: Item) -> np.ndarray:
        """Decode ``item`` and apply the validation item transforms: uint8 ``(H, W, 3)``."""
        return apply_item_tfms(to_rgb_array(item, self.draft_size), self.item_tfms, train=False)

    def forward_uint8(self, xb: torch.Tensor) -> torch.Tensor:
        """Probabilities (float32, on the CPU) for a uint8 NCHW batch."""
        xb = apply_batch_tfms(xb.to(self.device, non_blocking=True), self.tfms, train=False)
        cuda = self.device.type == "cuda"
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cuda", dtype=torch.float16) if cuda and self.amp else nullcontext()
        with eval_mode(self.model), torch.inference_mode(), autocast:
            out = self.model(xb)
        return torch.softmax(out.float(), dim=1).cpu()

    def predict(self, item: Item) -> tuple[str, torch.Tensor, torch.Tensor]:
        """``(label, index, probs)`` for one image, like fastai's ``learn.predict`` (``index`` is a 0-d tensor)."""
        img = self.preprocess(item)
        if not img.flags.writeable:  # e.g. a read-only array straight from PIL
            img = img.copy()
        probs = self.forward_uint8(torch.from_numpy(img).permute(2, 0, 1)[None])[0]
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
    ) -> torch.Tensor:
        """Probabilities ``(len(items), c)`` for many images, decoded in DataLoader workers.

        ``num_workers=None`` picks a value from the number of items and CPUs. An unreadable image
        raises an ``ImageError`` naming it. Labels are ``[self.vocab[i] for i in probs.argmax(1)]``.
        """
        items = list(items)
        if bs < 1:
            raise ValueError(f"bs must be >= 1, got {bs}")
        if not items:
            return torch.empty(0, self.c)
        workers = _default_workers(len(items), bs, self.device) if num_workers is None else num_workers
        dl = DataLoader(
            _ItemsDataset(items, self.item_tfms), batch_size=bs, shuffle=False, num_workers=workers,
            collate_fn=_collate, pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if workers > 0 else None,
        )
        out = []
        for xb in tqdm(_batches(dl), total=len(dl), desc="predict", disable=not progress, leave=False):
            out.append(self.forward_uint8(xb))
        return torch.cat(out)

    def decode(self, probs: torch.Tensor) -> list[str]:
        """Labels for a ``(n, c)`` probability tensor."""
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
        """Write this predictor to a ``.vtl`` file (see ``vision_tl.inference.export``)."""
        from .export import export_predictor

        return export_predictor(self, fname)

    def __repr__(self) -> str:
        arch = getattr(self.model_config, "arch", type(self.model).__name__)
        return f"Predictor({arch}, {self.c} classes, device={self.device})"


def inorder_dl(dl: Any, train: bool = False, bs: int | None = None, device: Any = None) -> TfmdDL:
    """A loader over ``dl``'s items in dataset order with no batch dropped, leaving ``dl`` untouched.

    With ``train=False`` the valid-time transforms (what ``get_preds(ds_idx=0)`` needs to match the
    predictions to ``dl.dataset.items``); with ``train=True`` the random training transforms, still in
    order (for TTA), seeded from torch's global RNG. It uses ``dl``'s workers, batch transforms and device.
    """
    ds = dl.dataset
    if isinstance(ds, ImageDataset):
        ds = ImageDataset(ds.items, ds.labels, ds.vocab, ds.item_tfms, train=train, on_bad_image=ds.on_bad_image)
    out = TfmdDL(
        ds, bs=bs or dl.bs, train=train, batch_tfms=dl.batch_tfms, device=device or dl.device,
        num_workers=dl.num_workers, drop_last=False, seed=int(torch.randint(2**31, (1,))) if train else 0,
        with_labels=getattr(dl, "with_labels", True), persistent_workers=False,
    )
    if train:  # TfmdDL shuffles on train: keep the dataset order
        out.sampler = SequentialSampler(range(len(ds)))
    return out


def tta(
    learn: Any, dl: Any = None, n: int = 4, beta: float | None = 0.25, bs: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Test-time augmentation on the validation set (or ``dl``'s dataset), like fastai's ``tta``.

    Averages the probabilities of ``n`` passes with the training transforms (item and batch), then
    blends them with one plain pass: ``(1 - beta) * augmented + beta * plain``. With ``beta=None``
    the augmented average alone is returned. Returns ``(probs, targets)`` in dataset order; ``targets``
    is None for unlabelled items (a ``dls.test_dl(items)``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if beta is not None and not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1] or None, got {beta}")
    dl = dl if dl is not None else learn.dls.valid
    model = getattr(learn, "raw_model", learn.model)
    device = next(model.parameters()).device

    def one_pass(loader: TfmdDL) -> torch.Tensor:
        with eval_mode(model), torch.inference_mode():
            return torch.cat([torch.softmax(model(b[0]).float(), dim=1).cpu() for b in loader])

    aug_dl = inorder_dl(dl, train=True, bs=bs, device=device)
    aug = torch.stack([one_pass(aug_dl) for _ in range(n)]).mean(0)
    labels = getattr(dl.dataset, "labels", None)
    targets = None if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
    if beta is None:
        return aug, targets
    return torch.lerp(aug, one_pass(inorder_dl(dl, bs=bs, device=device)), beta), targets
