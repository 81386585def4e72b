"""Batch transforms: uint8 -> float, one fused grid_sample, train-only randomness, seeded, Normalize last."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vision_tl.data.batch_tfms import (
    AffineWarp,
    Lighting,
    Normalize,
    apply_batch_tfms,
    aug_transforms,
    imagenet_stats,
)


def _batch(n: int = 8, h: int = 32, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
    x[:, :, :, : w // 2] = 250  # asymmetric, so flips and rotations show
    return x


class _CountCalls(TorchFunctionMode):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.n = fn, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += func is self.fn
        return func(*args, **(kwargs or {}))


def test_apply_batch_tfms_turns_uint8_into_float_in_unit_range():
    x = _batch()
    out = apply_batch_tfms(x, [], train=True)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out * 255, x.float())


def test_valid_is_deterministic_identity_and_train_is_random():
    x, tfms = _batch(), aug_transforms()
    val = apply_batch_tfms(x, tfms, train=False)
    assert torch.allclose(val, x.float() / 255)
    a = apply_batch_tfms(x, tfms, train=True, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, val, atol=1e-2)


def test_train_randomness_is_reproducible_under_a_seed():
    x, tfms = _batch(), aug_transforms(max_rotate=30, max_zoom=1.5)
    a = apply_batch_tfms(x, tfms, train=True, generator=torch.Generator().manual_seed(5))
    b = apply_batch_tfms(x, tfms, train=True, generator=torch.Generator().manual_seed(5))
    c = apply_batch_tfms(x, tfms, train=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_affine_and_warp_are_fused_into_one_grid_sample():
    tfms = aug_transforms(max_rotate=20, max_zoom=1.3, max_warp=0.3, p_affine=1.0)
    with _CountCalls(F.grid_sample) as counter:
        apply_batch_tfms(_batch(), tfms, train=True)
    assert counter.n == 1


def test_all_parts_off_is_the_identity():
    x = _batch().float() / 255
    out = AffineWarp(do_flip=False, max_rotate=0, max_zoom=1, max_warp=0)(x, train=True)
    assert torch.allclose(out, x, atol=1e-5)


def test_flip_gives_either_the_image_or_its_mirror_and_both_happen():
    x = _batch(32).float() / 255
    out = AffineWarp(do_flip=True, max_rotate=0, max_zoom=1, max_warp=0)(x, True, torch.Generator().manual_seed(0))
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x)]
    flipped = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, x)]
    assert all(s or f for s, f in zip(same, flipped))
    assert any(same) and any(flipped)


def test_size_resamples_train_and_resizes_valid():
    tfms = aug_transforms(size=16, min_scale=0.5)
    assert apply_batch_tfms(_batch(), tfms, train=True).shape == (8, 3, 16, 16)
    assert apply_batch_tfms(_batch(), tfms, train=False).shape == (8, 3, 16, 16)


def test_lighting_changes_brightness_per_image_and_stays_in_range():
    x = torch.full((64, 3, 8, 8), 0.5)
    out = Lighting(0.4, p_lighting=1.0)(x, True, torch.Generator().manual_seed(0))
    means = out.mean((1, 2, 3))
    assert out.min() > 0 and out.max() < 1
    assert means.min() < 0.4 and means.max() > 0.6
    assert torch.equal(Lighting(0.4)(x, train=False), x)


def test_normalize_runs_last_whatever_the_list_order():
    norm = Normalize.from_stats(*imagenet_stats)
    x = _batch()
    out = apply_batch_tfms(x, [norm, Lighting(0.0)], train=True)
    expected = (x.float() / 255 - torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1)) / torch.tensor(
        imagenet_stats[1]
    ).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert norm.order > max(t.order for t in aug_transforms())
    assert norm.mean == imagenet_stats[0] and norm.std == imagenet_stats[1]
    assert torch.allclose(norm.decode(out), x.float() / 255, atol=1e-5)
    assert norm.to_dict() == {"name": "Normalize", "mean": list(imagenet_stats[0]), "std": list(imagenet_stats[1])}


def test_aug_transforms_arguments_turn_parts_off():
    assert aug_transforms(do_flip=False, max_rotate=0, max_zoom=1, max_warp=0, max_lighting=0) == []
    assert [type(t).__name__ for t in aug_transforms()] == ["AffineWarp", "Lighting"]
    assert aug_transforms(mult=2.0)[0].max_rotate == 20.0


def test_to_dict_rebuilds_the_same_transform_by_name():
    from vision_tl.data import batch_tfms

    x = _batch()
    for t in aug_transforms(size=24, max_rotate=15, pad_mode="zeros") + [Normalize.from_stats(*imagenet_stats)]:
        d = dict(t.to_dict())
        again = getattr(batch_tfms, d.pop("name"))(**d)
        assert again.to_dict() == t.to_dict()
        g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
        assert torch.equal(again(x.float() / 255, True, g1), t(x.float() / 255, True, g2))


def test_fused_grid_matches_torch_affine_grid_for_affine_maps():
    from vision_tl.data.batch_tfms import _grid

    mat = torch.eye(3).repeat(4, 1, 1)
    mat[:, :2] += torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    for align in (True, False):
        ours = _grid(mat, (12, 20), align, perspective=False)
        ref = F.affine_grid(mat[:, :2], [4, 3, 12, 20], align_corners=align)
        assert torch.allclose(ours, ref, atol=1e-5)
        assert torch.allclose(_grid(mat, (12, 20), align, perspective=True), ref, atol=1e-5)
