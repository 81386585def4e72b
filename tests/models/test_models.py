"""Bodies, heads, configs and parameter groups: what vision_learner and load_learner rely on."""

from __future__ import annotations

import argparse

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from vision_tl.models.backbones import PretrainedWeightsError, create_body
from vision_tl.models.build import ModelConfig, build_model
from vision_tl.models.heads import create_head
from vision_tl.models.param_groups import check_groups, default_splitter, layerwise_splitter


def test_model_config_round_trips_through_json_dict():
    cfg = ModelConfig("resnet10t", n_out=5, lin_ftrs=[64], ps=0.25, input_size=(48, 64))
    d = cfg.to_dict()
    assert d["input_size"] == [48, 64] and "mean" not in d
    assert ModelConfig.from_dict(d) == cfg


def test_model_config_reads_old_configs_that_carried_mean_and_std():
    """Exports written before the preprocessing spec had mean/std in model_config: they still load."""
    old = {**ModelConfig("resnet10t", n_out=5).to_dict(), "mean": [0.5] * 3, "std": [0.2] * 3}
    assert ModelConfig.from_dict(old) == ModelConfig("resnet10t", n_out=5)


@pytest.mark.parametrize(
    "kwargs, needle",
    [({"n_out": 0}, "n_out"), ({"source": "keras"}, "'keras'"), ({"ps": 1.5}, "1.5"), ({"input_size": (1, 2, 3)}, "input_size")],
)
def test_model_config_rejects_bad_values_and_names_them(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ModelConfig("resnet10t", **kwargs)


def test_model_config_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict({"arch": "resnet10t", "colour": 1})


@pytest.mark.parametrize("cfg", [ModelConfig("resnet10t", n_out=4), ModelConfig("resnet18", source="torchvision", n_out=4)])
def test_build_model_is_body_plus_head_sized_to_n_out(cfg):
    model = build_model(cfg).eval()
    assert isinstance(model, nn.Sequential) and len(model) == 2
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_body_from_nn_module_reports_features():
    body = nn.Sequential(nn.Conv2d(3, 7, 3), nn.ReLU())
    got, nf, stats = create_body(body)
    assert got is body and nf == 7 and len(stats["mean"]) == 3


def test_unknown_timm_name_is_named_in_error():
    with pytest.raises(ValueError, match="resnet_nope"):
        create_body("resnet_nope", pretrained=False)


def test_pretrained_offline_error_says_how_to_supply_weights():
    # conftest sets HF_HUB_OFFLINE=1 and nothing is cached here
    with pytest.raises(PretrainedWeightsError, match="weights=.*--weights FILE.*pretrained=False.*--no-pretrained"):
        create_body("resnet10t", pretrained=True)


def test_pretrained_weights_come_from_the_cache_through_timm_when_offline(tmp_path, monkeypatch):
    import timm
    from timm.models import get_pretrained_cfg

    # a locally written checkpoint where torch.hub would have cached the real resnet10t weights
    url = get_pretrained_cfg("resnet10t").url
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(3)
    src = timm.create_model("resnet10t", pretrained=False)
    torch.save(src.state_dict(), ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    body, _, _ = create_body("resnet10t", pretrained=True)
    assert torch.equal(body.model.conv1[0].weight, src.conv1[0].weight)


def test_offline_pretrained_request_fails_without_touching_the_network(monkeypatch):
    # the hub client would retry for ~50 s; the probe must decide first, here without a connection
    import socket

    from vision_tl.models import hub

    def no_network(*args, **kwargs):
        raise AssertionError(f"tried to connect to {args[0]!r}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert not hub.host_reachable("huggingface.co")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub.host_reachable("huggingface.co")  # behind a proxy only the hub client can tell


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_local_weights_file_loads_into_body_ignoring_old_classifier(tmp_path, fmt):
    src = timm.create_model("resnet10t", pretrained=False, num_classes=10)  # a full classifier checkpoint
    sd = src.state_dict()
    f = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(f))
    else:
        torch.save({"state_dict": sd}, f)
    body, _, _ = create_body("resnet10t", pretrained=True, weights=f)
    assert torch.equal(body.model.conv1[0].weight, sd["conv1.0.weight"])
    assert torch.equal(body.model.layer4[0].bn2.running_mean, sd["layer4.0.bn2.running_mean"])


def test_weights_from_another_arch_are_refused_with_the_file_named(tmp_path):
    f = tmp_path / "other.safetensors"
    save_file(timm.create_model("resnet14t", pretrained=False).state_dict(), str(f))
    with pytest.raises(PretrainedWeightsError, match="other.safetensors"):
        create_body("resnet10t", weights=f)


def test_a_file_that_is_no_weights_file_says_so_in_one_line(tmp_path):
    f = tmp_path / "notes.pth"
    f.write_text("hello")
    with pytest.raises(PretrainedWeightsError, match="notes.pth.*not a .safetensors file or a torch.save state dict"):
        create_body("resnet10t", weights=f)


def test_pickled_objects_are_never_unpickled(tmp_path):
    f = tmp_path / "evil.pth"
    torch.save({"model": argparse.Namespace(payload="code")}, f)  # any non-tensor object needs pickle
    with pytest.raises(PretrainedWeightsError, match="weights_only"):
        create_body("resnet10t", weights=f)


def test_torchvision_builder_loads_local_pth(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    f = tmp_path / "r18.pth"
    torch.save(src.state_dict(), f)
    body, nf, _ = create_body(torchvision.models.resnet18, weights=f)
    assert nf == 512 and torch.equal(body[0].weight, src.conv1.weight)


@pytest.mark.parametrize("form", ["other_task_classifier", "body_only", "learner_save_keys", "ddp_prefix"])
def test_torchvision_builder_loads_weights_from_another_task(tmp_path, form):
    # the transfer path: weights trained for another number of classes, or saved from a cut body
    torch.manual_seed(0)
    src = torchvision.models.resnet18(weights=None, num_classes=5)
    src_body = nn.Sequential(*list(src.children())[:-2])
    sd = {"other_task_classifier": src.state_dict(),
          "body_only": src_body.state_dict(),
          "learner_save_keys": {f"0.{k}": v for k, v in src_body.state_dict().items()},
          "ddp_prefix": {f"module.{k}": v for k, v in src.state_dict().items()}}[form]
    f = tmp_path / "w.pth"
    torch.save(sd, f)
    body, nf, _ = create_body(torchvision.models.resnet18, weights=f)
    assert nf == 512
    for k, v in src_body.state_dict().items():
        assert torch.equal(body.state_dict()[k], v), k


def test_head_matches_fastai_layout():
    head = create_head(64, 3, ps=0.5)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["AdaptiveConcatPool2d", "Flatten", "BatchNorm1d", "Dropout", "Linear", "ReLU",
                     "BatchNorm1d", "Dropout", "Linear"]
    assert head[2].num_features == 128  # concat pooling doubles the features
    assert head[3].p == 0.25 and head[7].p == 0.5  # ps/2 for hidden layers, ps for the last
    assert head[-1].out_features == 3 and head[-1].bias is None  # no bias right after a BatchNorm
    assert create_head(64, 3, concat_pool=False, lin_ftrs=[])(torch.rand(2, 64, 2, 2)).shape == (2, 3)


@pytest.mark.parametrize("cfg", [ModelConfig("resnet10t", n_out=3), ModelConfig("resnet18", source="torchvision", n_out=3)])
def test_default_splitter_gives_early_body_late_body_head(cfg):
    model = build_model(cfg)
    groups = check_groups(model, default_splitter(model))
    assert len(groups) == 3
    assert {id(p) for p in groups[-1]} == {id(p) for p in model[1].parameters()}
    assert {id(p) for g in groups for p in g} == {id(p) for p in model.parameters()}
    first_conv = next(model[0].parameters())
    assert any(p is first_conv for p in groups[0])


def test_layerwise_splitter_has_one_group_per_stage_in_order():
    """stem, layer1..layer4, head: each group holds exactly that stage's parameters (layer decay relies on it)."""
    model = build_model(ModelConfig("resnet10t", n_out=3))
    groups = check_groups(model, layerwise_splitter(model))
    body = model[0].model  # the timm resnet: conv1/bn1 (the stem), layer1..layer4
    expected = [[*model[0].model.conv1.parameters(), *body.bn1.parameters()],
                *[list(getattr(body, f"layer{i}").parameters()) for i in range(1, 5)],
                list(model[1].parameters())]
    assert [{id(p) for p in g} for g in groups] == [{id(p) for p in g} for g in expected]


def test_check_groups_names_left_out_parameters():
    model = build_model(ModelConfig("resnet10t", n_out=3))
    with pytest.raises(ValueError, match="left out"):
        check_groups(model, [list(model[1].parameters())])
