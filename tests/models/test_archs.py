"""fastai's architecture symbols (resnet*, xresnet*), y_range heads, and fastai-style body indexing."""

from __future__ import annotations

import time

import pytest
import torch
import torchvision
from torch import nn

from vision_tl.models.archs import resnet18, xresnet18, xresnet50
from vision_tl.models.backbones import PretrainedWeightsError, create_body
from vision_tl.models.build import ModelConfig, build_model, config_for
from vision_tl.models.heads import SigmoidRange, create_head


def test_resnet_symbol_builds_torchvisions_resnet_body_and_config():
    body, nf, stats = create_body(resnet18, pretrained=False)
    assert nf == 512 and isinstance(body[-1][0], torchvision.models.resnet.BasicBlock)  # body[-1] is layer4
    cfg = config_for(resnet18, 3, stats)
    assert (cfg.arch, cfg.source) == ("resnet18", "torchvision")
    assert isinstance(build_model(cfg)[0][0], nn.Conv2d)  # torchvision's 7x7 stem, not timm's


def test_resnet_symbol_pretrained_loads_torchvisions_weights_from_the_hub_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    ckpt = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(7)
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), ckpt)
    body, _, stats = create_body(resnet18, pretrained=True)
    torch.testing.assert_close(body[0].weight, ref.conv1.weight)
    torch.testing.assert_close(body[-1][1].conv2.weight, ref.layer4[1].conv2.weight)
    assert stats["mean"] == pytest.approx((0.485, 0.456, 0.406))


def test_resnet_symbol_pretrained_without_cache_fails_at_once_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(PretrainedWeightsError, match="'resnet18'.*no network and no cached copy"):
        create_body(resnet18, pretrained=True)
    assert time.perf_counter() - t0 < 5


def test_xresnet_maps_to_timms_resnet_d_and_builds_a_whole_model():
    body, nf, stats = create_body(xresnet18, pretrained=False)
    assert nf == 512 and isinstance(body.model.conv1, nn.Sequential)  # the deep 3-conv stem
    assert config_for(xresnet18, 4, stats).arch == "resnet18d"
    model = xresnet50(n_out=5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert "resnet50d" in repr(xresnet50)


def test_timm_body_is_indexable_like_fastais_body():
    body, _, _ = create_body("resnet18", pretrained=False)
    assert body[-1] is body.model.layer4 and body[0] is body.model.conv1
    assert len(body) == 8  # conv1 bn1 act1 maxpool layer1..4: no pooling or classifier left


def test_y_range_squashes_head_outputs_into_the_range():
    head = create_head(8, 2, y_range=(-1.0, 3.0)).eval()
    assert isinstance(head[-1], SigmoidRange)
    out = head(torch.randn(64, 8, 2, 2) * 1000)
    assert out.min() >= -1.0 and out.max() <= 3.0 and out.max() - out.min() > 2.0
    with pytest.raises(ValueError, match=r"low < high, got \(2.0, 1.0\)"):
        SigmoidRange(2.0, 1.0)


def test_y_range_travels_in_the_model_config():
    cfg = ModelConfig(arch="resnet10t", n_out=1, y_range=(0, 5))
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again.y_range == (0.0, 5.0)
    model = build_model(again).eval()
    assert isinstance(model[1][-1], SigmoidRange) and model[1][-1].high == 5.0
    with pytest.raises(ValueError, match="y_range"):
        ModelConfig(arch="resnet10t", y_range=(3, 1))
    assert "y_range" not in ModelConfig(arch="resnet10t").to_dict()  # files stay readable by older versions
