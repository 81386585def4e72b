"""The preprocessing spec and the one prediction step: plain data, one registry, one activation switch."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from vision_tl.data.batch_tfms import AffineWarp, Lighting, Normalize, imagenet_stats
from vision_tl.data.item_tfms import Resize
from vision_tl.data.registry import is_serializable
from vision_tl.models.predict_step import activate, predict_step, prepare_batch
from vision_tl.models.preprocess import Preprocess, decide_stats, weights_stats


def test_preprocess_round_trips_through_the_manifest_fields():
    spec = Preprocess([Resize(32)], [AffineWarp(size=24), Normalize(*imagenet_stats)], activation="sigmoid")
    assert spec.mean == imagenet_stats[0] and spec.batch_tfms[0].size == (24, 24) and len(spec.batch_tfms) == 1
    d = json.loads(json.dumps(spec.to_dict()))
    assert set(d) == {"item_tfms", "batch_tfms", "normalize", "input_size", "activation"}
    again = Preprocess.from_dict(d)
    assert again.to_dict() == d and again.input_size == (32, 32) and again.activation == "sigmoid"


def test_an_old_manifest_without_activation_means_softmax():
    old = {"item_tfms": [Resize(32).to_dict()], "batch_tfms": [], "normalize": None, "input_size": [32, 32]}
    assert Preprocess.from_dict(old).activation == "softmax"


def test_preprocess_rejects_an_unknown_activation_and_half_stats():
    with pytest.raises(ValueError, match="'tanh'"):
        Preprocess(activation="tanh")
    with pytest.raises(ValueError, match="both mean and std"):
        Preprocess(mean=(0.5, 0.5, 0.5))


def test_only_registered_transforms_are_saved():
    class MyWarp(AffineWarp):
        pass

    assert is_serializable(AffineWarp()) and is_serializable(Lighting()) and is_serializable(Resize(8))
    assert not is_serializable(MyWarp()) and not is_serializable(Normalize())
    with pytest.warns(UserWarning, match="not saved"):
        d = Preprocess([Resize(8)], [MyWarp(), Lighting()]).to_dict()
    assert [t["name"] for t in d["batch_tfms"]] == ["Lighting"]
    with pytest.raises(ValueError, match="cannot be saved"):
        Preprocess([lambda img, train: img]).to_dict()


def test_prepare_batch_transforms_uint8_once_and_normalizes_unless_the_loader_did():
    spec = Preprocess(batch_tfms=[AffineWarp(size=4)], mean=(0.5,) * 3, std=(0.25,) * 3)
    xb = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    x = prepare_batch(xb, spec)
    assert x.shape == (2, 3, 4, 4) and torch.allclose(x, torch.full_like(x, 2.0))
    f = torch.ones(2, 3, 8, 8)
    assert prepare_batch(f, spec).shape == (2, 3, 8, 8)  # a float batch had its batch tfms from its loader
    assert torch.equal(prepare_batch(f, spec, normalize=False), f)


def test_predict_step_applies_the_specs_activation():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).train()
    xb = torch.randint(0, 256, (2, 3, 2, 2), dtype=torch.uint8)
    logits = model(xb.float() / 255)
    for act, expect in (("softmax", logits.softmax(-1)), ("sigmoid", logits.sigmoid()), ("none", logits)):
        assert torch.allclose(predict_step(model, xb, Preprocess(activation=act)), expect, atol=1e-6)
    assert model.training  # eval mode only for the call
    with pytest.raises(ValueError, match="'relu'"):
        activate(logits, "relu")


def test_stats_come_from_the_user_then_the_weights_file_then_the_architecture(tmp_path):
    arch = {"mean": imagenet_stats[0], "std": imagenet_stats[1]}
    f, pth = tmp_path / "w.safetensors", tmp_path / "w.pth"
    save_file({"w": torch.zeros(1)}, str(f), metadata={"mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]"})
    torch.save({"w": torch.zeros(1)}, pth)
    assert weights_stats(f) == ((0.5,) * 3, (0.5,) * 3) and weights_stats(pth) is None
    assert decide_stats(arch) == imagenet_stats and decide_stats(arch, pth) == imagenet_stats
    with pytest.warns(UserWarning, match="w.safetensors"):
        assert decide_stats(arch, f) == ((0.5,) * 3, (0.5,) * 3)
    with pytest.warns(UserWarning, match="the mean/std given"):
        assert decide_stats(arch, f, mean=(0.4,) * 3, std=(0.2,) * 3) == ((0.4,) * 3, (0.2,) * 3)
