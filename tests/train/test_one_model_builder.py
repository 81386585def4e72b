"""One function builds a model from its config, for training and for loading alike."""

from __future__ import annotations

import pytest
import torch

from vision_tl import load_learner, vision_learner
from vision_tl.data.factories import ImageDataLoaders
from vision_tl.data.item_tfms import Resize
from vision_tl.models import build


@pytest.mark.parametrize("head", [{}, {"lin_ftrs": [24], "bn_final": True, "concat_pool": False, "ps": 0.1}],
                         ids=["default-head", "custom-head-shape"])
def test_vision_learner_and_load_learner_build_the_same_model(class_folder, tmp_path, head):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=8,
                                       num_workers=0, device="cpu")
    learn = vision_learner(dls, "resnet10t", pretrained=False, path=tmp_path, **head)
    loaded = load_learner(learn.export(tmp_path / "m.vtl"), backend="torch", device="cpu").model
    assert str(loaded) == str(learn.raw_model)  # same modules, same order, same shapes
    trained_sd, loaded_sd = learn.raw_model.state_dict(), loaded.state_dict()
    assert list(loaded_sd) == list(trained_sd)
    assert all(torch.equal(loaded_sd[k].cpu(), v.cpu()) for k, v in trained_sd.items())


def test_vision_learner_builds_through_the_config_builder(class_folder, monkeypatch):
    """vision_learner calls build_model_and_stats (what load_learner's build_model calls) with its config."""
    seen = []
    real = build.build_model_and_stats

    def spy(cfg, *args, **kwargs):
        seen.append(cfg)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(build, "build_model_and_stats", spy)
    monkeypatch.setattr("vision_tl.train.vision_learner.build_model_and_stats", spy)
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=8,
                                       num_workers=0, device="cpu")
    learn = vision_learner(dls, "resnet10t", pretrained=False, lin_ftrs=[12])
    build.build_model(learn.model_config)
    assert [c.arch for c in seen] == ["resnet10t", "resnet10t"] and seen[0].lin_ftrs == [12]
