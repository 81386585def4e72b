"""Fixtures for inference tests: a tiny untrained predictor and its export (no training needed)."""

from __future__ import annotations

import pytest

from vision_tl.data.batch_tfms import imagenet_stats
from vision_tl.data.item_tfms import Resize
from vision_tl.inference.predict import Predictor
from vision_tl.models.build import ModelConfig, build_model

from .helpers import VOCAB


@pytest.fixture
def predictor():
    """resnet10t (random init) at 32 px with ImageNet stats, 3 classes, on the CPU."""
    cfg = ModelConfig(arch="resnet10t", n_out=len(VOCAB), input_size=(32, 32))
    model = build_model(cfg, pretrained=False).eval()
    return Predictor(model, VOCAB, [Resize(32)], imagenet_stats, device="cpu", model_config=cfg)


@pytest.fixture
def exported(predictor, tmp_path):
    """``(path, predictor)``: the fixture predictor exported to ``model.vtl``."""
    return predictor.export(tmp_path / "model.vtl"), predictor


@pytest.fixture
def image_files(class_folder):
    return sorted(class_folder.rglob("*.jpg"))
