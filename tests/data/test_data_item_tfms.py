"""Resize / RandomResizedCrop: fastai semantics (random on train, centre on valid), sizes, round-trip to JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vision_tl.data.item_tfms import (
    RandomResizedCrop,
    Resize,
    apply_item_tfms,
    draft_size_for,
    item_tfm_from_dict,
)


def _thirds(h: int = 100, w: int = 300) -> np.ndarray:
    """A wide image: red, green, blue thirds from left to right."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    third = w // 3
    img[:, :third, 0] = img[:, third : 2 * third, 1] = img[:, 2 * third :, 2] = 255
    return img


def _dominant(region: np.ndarray) -> int:
    return int(region.reshape(-1, 3).mean(0).argmax())


def test_resize_crop_valid_is_the_centre_and_keeps_the_aspect_ratio():
    out = Resize(50)(_thirds(), train=False)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    assert (out[..., 1] > 200).all() and (out[..., 0] < 60).all()  # only the green middle third


def test_resize_crop_train_moves_the_window_at_random_but_reproducibly():
    rz = Resize(50)
    outs = [rz(_thirds(), train=True, rng=np.random.default_rng(s)) for s in range(20)]
    colours = {_dominant(o) for o in outs}
    assert colours == {0, 1, 2}  # the window lands left, middle and right
    again = rz(_thirds(), train=True, rng=np.random.default_rng(3))
    assert np.array_equal(again, outs[3])


def test_resize_squish_keeps_everything():
    out = Resize(60, method="squish")(_thirds(), train=False)
    assert out.shape == (60, 60, 3)
    assert [_dominant(out[:, i * 20 + 5 : i * 20 + 15]) for i in range(3)] == [0, 1, 2]


def test_resize_pad_zeros_centres_the_image_on_valid():
    out = Resize(60, method="pad", pad_mode="zeros")(_thirds(), train=False)
    assert out.shape == (60, 60, 3)
    assert out[:15].max() == 0 and out[-15:].max() == 0  # black bars above and below
    assert [_dominant(out[25:35, i * 20 + 5 : i * 20 + 15]) for i in range(3)] == [0, 1, 2]
    refl = Resize(60, method="pad", pad_mode="reflection")(_thirds(), train=False)
    assert refl[:15].max() > 0


def test_non_square_sizes_are_h_w():
    assert Resize((32, 64))(_thirds(), train=True).shape == (32, 64, 3)
    assert Resize((32, 64), method="pad")(_thirds(50, 40), train=False).shape == (32, 64, 3)
    assert RandomResizedCrop((40, 24))(_thirds(), train=True).shape == (40, 24, 3)
    assert RandomResizedCrop((40, 24))(_thirds(), train=False).shape == (40, 24, 3)


def test_small_images_are_upscaled():
    assert Resize(64)(np.zeros((10, 7, 3), np.uint8), train=True).shape == (64, 64, 3)
    assert RandomResizedCrop(64)(np.zeros((3, 5, 3), np.uint8), train=True).shape == (64, 64, 3)


def test_random_resized_crop_valid_squishes_with_a_margin_then_crops_the_centre():
    img = np.zeros((128, 128, 3), np.uint8)
    img[8:-8, 8:-8] = 255  # a black border of 1/16 of the side
    rrc = RandomResizedCrop(64)  # valid: resize to 64 + 16 = 80, keep the centre 64 (border cut away)
    out = rrc(img, train=False)
    assert out.shape == (64, 64, 3) and out.min() > 200
    assert np.array_equal(out, rrc(img, train=False))
    assert RandomResizedCrop(64, val_xtra=0)(img, train=False).min() == 0  # no margin: border kept


def test_random_resized_crop_train_varies_the_scale():
    rrc = RandomResizedCrop(32, min_scale=0.01, ratio=(1, 1))
    img = _thirds(300, 300)
    colours = [len({_dominant(o[:, :4]), _dominant(o[:, -4:])}) for o in
               (rrc(img, train=True, rng=np.random.default_rng(s)) for s in range(200))]
    assert 1 in colours and 2 in colours  # small crops within one third, big ones across thirds


@pytest.mark.parametrize("tfm", [Resize(24), Resize((20, 30), method="pad", pad_mode="border"),
                                 RandomResizedCrop(16, min_scale=0.5, ratio=(0.5, 2.0), val_xtra=0.2)])
def test_to_dict_round_trips_through_json(tfm):
    d = json.loads(json.dumps(tfm.to_dict()))
    again = item_tfm_from_dict(d)
    assert again == tfm and type(again) is type(tfm)
    assert np.array_equal(again(_thirds(), train=False), tfm(_thirds(), train=False))


@pytest.mark.parametrize("make, match", [
    (lambda: Resize(0), "size must be positive, got 0"),
    (lambda: Resize("224"), "size must be an int or a .h, w. pair of ints, got '224'"),
    (lambda: Resize(32, method="stretch"), "method must be one of .* got 'stretch'"),
    (lambda: Resize(32, pad_mode="wrap"), "pad_mode must be one of .* got 'wrap'"),
    (lambda: RandomResizedCrop(32, min_scale=0), "min_scale must be in .* got 0"),
    (lambda: RandomResizedCrop(32, ratio=(2, 1)), "ratio must be"),
    (lambda: item_tfm_from_dict({"name": "Rotate"}), "unknown item transform"),
    (lambda: item_tfm_from_dict({"name": "Resize", "size": 3, "colour": 1}), "bad arguments"),
])
def test_bad_arguments_echo_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_apply_item_tfms_and_draft_size():
    tfms = [Resize(40), Resize(20, method="squish")]
    assert apply_item_tfms(_thirds(), tfms, train=False).shape == (20, 20, 3)
    assert apply_item_tfms(_thirds(), [], train=False).shape == (100, 300, 3)
    assert draft_size_for(tfms) == (40, 40)
    assert draft_size_for([]) is None
    assert draft_size_for([RandomResizedCrop(64)]) == (80, 80)
