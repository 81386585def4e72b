"""Per-batch transforms on the device, in torch: fused affine + warp, lighting, normalization.

Batches arrive as uint8 NCHW on the device; :func:`apply_batch_tfms` turns them to float in [0, 1]
and runs the transforms sorted by ``order``. Random parameters are drawn on the CPU from a
``torch.Generator`` (a handful of numbers per image) and moved to the device, so a seeded run is
reproducible on any device. Randomness only when ``train=True``; on valid the transforms are the
identity (or a plain resize when ``size`` is given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import serializable, tfm_from_dict

imagenet_stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def _coin(n: int, p: float, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=g) < p


class BatchTransform:
    """Base class: ``__call__(x, train, generator=None)`` on a float NCHW batch; lower ``order`` runs first."""

    order: int = 50

    def __call__(self, x: Tensor, train: bool, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": type(self).__name__}


@serializable
class AffineWarp(BatchTransform):
    """Flip, rotation, zoom, random-resized crop and perspective warp, composed into one ``grid_sample``.

    One resampling per batch keeps the image sharp (no blur from chained interpolations) and costs one
    pass over the pixels. ``size`` (h, w) sets the output size (also applied, without randomness, on valid).
    """

    order = 30

    def __init__(
        self, do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0, min_zoom: float = 1.0,
        max_zoom: float = 1.1, max_warp: float = 0.2, p_affine: float = 0.75, size: int | Sequence[int] | None = None,
        min_scale: float = 1.0, pad_mode: str = "reflection", mode: str = "bilinear", align_corners: bool = True,
    ):
        if pad_mode not in ("reflection", "zeros", "border"):
            raise ValueError(f"pad_mode must be 'reflection', 'zeros' or 'border', got {pad_mode!r}")
        if not 0 < min_zoom <= max_zoom:
            raise ValueError(f"need 0 < min_zoom <= max_zoom, got min_zoom={min_zoom!r}, max_zoom={max_zoom!r}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
        self.do_flip, self.flip_vert, self.max_rotate = do_flip, flip_vert, float(max_rotate)
        self.min_zoom, self.max_zoom, self.max_warp, self.p_affine = float(min_zoom), float(max_zoom), float(max_warp), p_affine
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
        self.min_scale, self.pad_mode, self.mode, self.align_corners = float(min_scale), pad_mode, mode, align_corners

    def _matrices(self, n: int, g: torch.Generator | None) -> Tensor:
        """Per-image 3x3 matrices mapping output coordinates to input coordinates ([-1, 1] space)."""
        mat = torch.eye(3).repeat(n, 1, 1)
        if self.do_flip:
            flip = _coin(n, 0.5, g)
            if self.flip_vert:  # dihedral: any of the 8 symmetries of the square
                k = torch.randint(0, 4, (n,), generator=g).float() * (math.pi / 2)
                rot = _rot(k)
                fl = torch.eye(3).repeat(n, 1, 1)
                fl[flip, 0, 0] = -1
                mat = mat @ rot @ fl
            else:
                mat[flip, 0, 0] = -1
        do = _coin(n, self.p_affine, g)
        if self.max_rotate > 0:
            ang = _uniform(n, -self.max_rotate, self.max_rotate, g) * (math.pi / 180) * do
            mat = mat @ _rot(ang)
        if self.max_zoom > 1 or self.min_zoom < 1 or self.min_scale < 1:
            zoom = torch.where(do, _uniform(n, self.min_zoom, self.max_zoom, g), torch.ones(n))
            if self.min_scale < 1:  # random-resized crop: keep a fraction of the area
                zoom = zoom / torch.sqrt(_uniform(n, self.min_scale, 1.0, g))
            cx, cy = _uniform(n, -1, 1, g), _uniform(n, -1, 1, g)
            z = torch.eye(3).repeat(n, 1, 1)
            z[:, 0, 0] = z[:, 1, 1] = 1 / zoom
            z[:, 0, 2], z[:, 1, 2] = (1 - 1 / zoom) * cx, (1 - 1 / zoom) * cy
            mat = z @ mat
        return mat

    def __call__(self, x: Tensor, train: bool, generator: torch.Generator | None = None) -> Tensor:
        n, c, h, w = x.shape
        out_hw = self.size or (h, w)
        if not train:
            if tuple(out_hw) == (h, w):
                return x
            return F.interpolate(x, size=tuple(out_hw), mode="bilinear", align_corners=False, antialias=True)
        mat = self._matrices(n, generator)
        if self.max_warp > 0:  # the perspective warp is a homography too: fold it into the same matrix
            do = _coin(n, self.p_affine, generator)
            mag = torch.stack([_uniform(n, -self.max_warp, self.max_warp, generator) for _ in range(2)], 1)
            mat = _perspective_matrix(mag * do[:, None]) @ mat
        perspective = bool((mat[:, 2, :2] != 0).any())  # checked on the CPU: no device sync
        grid = _grid(mat.to(x.device, x.dtype), out_hw, self.align_corners, perspective)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.pad_mode, align_corners=self.align_corners)

    def to_dict(self) -> dict[str, Any]:
        keys = ("do_flip", "flip_vert", "max_rotate", "min_zoom", "max_zoom", "max_warp", "p_affine", "min_scale",
                "pad_mode", "mode", "align_corners")
        return {"name": "AffineWarp", **{k: getattr(self, k) for k in keys}, "size": list(self.size) if self.size else None}


def _rot(theta: Tensor) -> Tensor:
    m = torch.eye(3).repeat(len(theta), 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def _grid(mat: Tensor, out_hw: Sequence[int], align_corners: bool, perspective: bool = True) -> Tensor:
    """Sampling grid (n, h, w, 2) of the homographies ``mat`` (n, 3, 3).

    Written as broadcast multiply-adds: a batched matmul with an inner size of 3 is slow on CPU.
    """
    h, w = out_hw

    def lin(k: int) -> Tensor:
        v = torch.linspace(-1, 1, k, device=mat.device, dtype=mat.dtype)
        return v if align_corners else v * (k - 1) / k

    xs, ys = lin(w).view(1, 1, w), lin(h).view(1, h, 1)
    m = mat.view(-1, 9, 1, 1).unbind(1)
    gx = m[0] * xs + m[1] * ys + m[2]
    gy = m[3] * xs + m[4] * ys + m[5]
    if perspective:  # divide by the third coordinate (skipped for pure affine maps)
        gz = (m[6] * xs + m[7] * ys + m[8]).clamp_min_(1e-6)
        gx, gy = gx / gz, gy / gz
    return torch.stack([gx.expand(-1, h, w), gy.expand(-1, h, w)], -1)


def _perspective_matrix(mag: Tensor) -> Tensor:
    """fastai's ``Warp`` as a 3x3 homography: the four corners move by ``mag`` (n, 2) = (x, y)."""
    n = mag.shape[0]
    src = [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]
    mx, my = mag[:, 0].double(), mag[:, 1].double()
    dst = [(-1 + mx, -1 - my), (-1 - mx, 1 - my), (1 + mx, -1 + my), (1 - mx, 1 + my)]
    rows, rhs = [], []
    one, zero = torch.ones_like(mx), torch.zeros_like(mx)
    for (x, y), (u, v) in zip(src, dst):  # solve the 8 coefficients (one 8x8 system per image)
        rows.append(torch.stack([x * one, y * one, one, zero, zero, zero, -u * x, -u * y], 1))
        rows.append(torch.stack([zero, zero, zero, x * one, y * one, one, -v * x, -v * y], 1))
        rhs += [u, v]
    coeffs = torch.linalg.solve(torch.stack(rows, 1), torch.stack(rhs, 1))
    return torch.cat([coeffs, torch.ones(n, 1, dtype=coeffs.dtype)], 1).view(n, 3, 3).float()


@serializable
class Lighting(BatchTransform):
    """Random brightness and contrast in logit space (fastai's ``Brightness`` and ``Contrast``)."""

    order = 40

    def __init__(self, max_lighting: float = 0.2, p_lighting: float = 0.75):
        if not 0 <= max_lighting < 1:
            raise ValueError(f"max_lighting must be in [0, 1), got {max_lighting!r}")
        self.max_lighting, self.p_lighting = float(max_lighting), float(p_lighting)

    def __call__(self, x: Tensor, train: bool, generator: torch.Generator | None = None) -> Tensor:
        if not train or self.max_lighting == 0:
            return x
        n, m = x.shape[0], self.max_lighting
        bright = _uniform(n, 0.5 * (1 - m), 0.5 * (1 + m), generator)
        bright = torch.where(_coin(n, self.p_lighting, generator), bright, torch.full((n,), 0.5))
        contrast = torch.exp(_uniform(n, math.log(1 - m), -math.log(1 - m), generator))
        contrast = torch.where(_coin(n, self.p_lighting, generator), contrast, torch.ones(n))
        shift = torch.logit(bright).to(x.device, x.dtype).view(n, 1, 1, 1)
        scale = contrast.to(x.device, x.dtype).view(n, 1, 1, 1)
        return torch.logit(x, eps=1e-5).mul_(scale).add_(shift).sigmoid_()  # in place on logit's new tensor

    def to_dict(self) -> dict[str, Any]:
        return {"name": "Lighting", "max_lighting": self.max_lighting, "p_lighting": self.p_lighting}


class Normalize(BatchTransform):
    """``(x - mean) / std`` per channel; always the last batch transform."""

    order = 99

    def __init__(self, mean: Sequence[float] = imagenet_stats[0], std: Sequence[float] = imagenet_stats[1]):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize needs one positive std per mean, got mean={mean!r}, std={std!r}")
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    @classmethod
    def from_stats(cls, mean: Sequence[float], std: Sequence[float]) -> Normalize:
        """fastai's spelling: ``Normalize.from_stats(*imagenet_stats)``."""
        return cls(mean, std)

    def _stats(self, device: torch.device, dtype: torch.dtype, scale: float = 1.0) -> tuple[Tensor, Tensor]:
        key = (device, dtype, scale)
        if key not in self._cache:
            view = (1, len(self.mean), 1, 1)
            self._cache[key] = (
                torch.tensor([m * scale for m in self.mean], device=device, dtype=dtype).view(view),
                torch.tensor([s * scale for s in self.std], device=device, dtype=dtype).view(view),
            )
        return self._cache[key]

    def __call__(self, x: Tensor, train: bool = False, generator: torch.Generator | None = None) -> Tensor:
        mean, std = self._stats(x.device, x.dtype)
        return (x - mean) / std

    def from_uint8(self, x: Tensor) -> Tensor:
        """A uint8 NCHW batch to normalized float32 in one pass: ``(x - 255 mean) / (255 std)``."""
        mean, std = self._stats(x.device, torch.float32, 255.0)
        return x.to(torch.float32, memory_format=torch.contiguous_format).sub_(mean).div_(std)

    def decode(self, x: Tensor) -> Tensor:
        """Undo the normalization (for showing a batch)."""
        mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) for v in (self.mean, self.std))
        return x * std + mean

    def __getstate__(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "_cache": {}}

    def to_dict(self) -> dict[str, Any]:
        return {"name": "Normalize", "mean": list(self.mean), "std": list(self.std)}

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def aug_transforms(
    mult: float = 1.0, do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0,
    min_zoom: float = 1.0, max_zoom: float = 1.1, max_lighting: float = 0.2, max_warp: float = 0.2,
    p_affine: float = 0.75, p_lighting: float = 0.75, xtra_tfms: Sequence[BatchTransform] | None = None,
    size: int | Sequence[int] | None = None, mode: str = "bilinear", pad_mode: str = "reflection",
    align_corners: bool = True, min_scale: float = 1.0,
) -> list[BatchTransform]:
    """fastai's standard augmentations: one fused affine/warp transform, then lighting.

    ``mult`` scales ``max_rotate``, ``max_lighting`` and ``max_warp`` as in fastai.
    """
    max_rotate, max_lighting, max_warp = max_rotate * mult, max_lighting * mult, max_warp * mult
    tfms: list[BatchTransform] = []
    if do_flip or max_rotate or max_zoom > 1 or min_zoom < 1 or max_warp or size is not None or min_scale < 1:
        tfms.append(AffineWarp(
            do_flip=do_flip, flip_vert=flip_vert, max_rotate=max_rotate, min_zoom=min_zoom, max_zoom=max_zoom,
            max_warp=max_warp, p_affine=p_affine, size=size, min_scale=min_scale, pad_mode=pad_mode, mode=mode,
            align_corners=align_corners,
        ))
    if max_lighting:
        tfms.append(Lighting(max_lighting, p_lighting))
    return tfms + list(xtra_tfms or [])


def batch_tfm_from_dict(d: dict[str, Any]) -> BatchTransform:
    """Rebuild a batch transform from its ``to_dict()`` (constructor arguments by name), e.g. from an export.

    ``Normalize`` is not registered: an export saves normalization as the preprocessing spec's stats.
    """
    return tfm_from_dict(d, BatchTransform, "batch transform")


def has_normalize(tfms: Sequence[Any] | None) -> bool:
    """Whether ``tfms`` (e.g. a DataLoader's ``batch_tfms``) normalizes by itself (a user's ``Normalize``)."""
    return any(isinstance(t, Normalize) for t in tfms or ())


def apply_batch_tfms(
    x: Tensor, tfms: Sequence[BatchTransform] | None, train: bool, generator: torch.Generator | None = None,
    normalize: Normalize | None = None,
) -> Tensor:
    """uint8 NCHW -> float32 in [0, 1], then ``tfms`` sorted by ``order`` (random only when ``train``), then
    ``normalize`` (the model's normalization, given by its owner, the Learner's preprocessing spec).

    With no ``tfms``, a uint8 batch is normalized in the same pass that makes it float (``Normalize.from_uint8``).
    """
    if x.dtype == torch.uint8:
        if normalize is not None and not tfms:
            return normalize.from_uint8(x)
        # contiguous NCHW: grid_sample is several times slower on channels-last
        x = x.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
    elif not torch.is_floating_point(x):
        raise TypeError(f"apply_batch_tfms expects a uint8 or float batch, got {x.dtype}")
    for t in sorted(tfms or (), key=lambda t: getattr(t, "order", 50)):
        x = t(x, train, generator=generator)
    return x if normalize is None else normalize(x)
