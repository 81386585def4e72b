"""Fixtures for the server tests: a tiny exported model, images, and real servers on free loopback ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import API_KEY, VOCAB, Server


@pytest.fixture(scope="session")
def served_model(tmp_path_factory) -> Path:
    """resnet10t (random init, seeded) at 32 px, 3 classes, exported to a .vtl file."""
    import torch

    from vision_tl import ModelConfig, Predictor, Resize, build_model, imagenet_stats

    torch.manual_seed(0)
    cfg = ModelConfig(arch="resnet10t", n_out=len(VOCAB), input_size=(32, 32))
    model = build_model(cfg, pretrained=False).eval()
    pred = Predictor(model, VOCAB, [Resize(32)], imagenet_stats, device="cpu", model_config=cfg)
    return pred.export(tmp_path_factory.mktemp("serve") / "model.vtl")


@pytest.fixture(scope="session")
def server(served_model, tmp_path_factory):
    """One server for the API tests: an API key, a 1 MB upload limit."""
    srv = Server(served_model, tmp_path_factory.mktemp("srv"), "--max-upload-mb", "1", api_key=API_KEY)
    yield srv
    srv.stop()
