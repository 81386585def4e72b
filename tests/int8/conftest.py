"""Fixtures for the int8 tests: a resnet10t that really reads scikit-learn's digits (about 90% on held-out
digits), as arrays and as a folder of PNGs, and its fp32 ONNX graph. Only the head is trained, on features of
the random body computed once, so the model takes seconds to make."""

from __future__ import annotations

import pytest
import torch

from vision_tl.data.batch_tfms import imagenet_stats
from vision_tl.data.item_tfms import Resize
from vision_tl.inference.predict import Predictor
from vision_tl.models.build import ModelConfig, build_model

from .helpers import SIZE, VOCAB, digits, train_head


@pytest.fixture(scope="session")
def digit_arrays():
    """``(images, labels)``: uint8 (1797, 3, 32, 32) and int (1797,), shuffled."""
    return digits()


@pytest.fixture(scope="session")
def digits_predictor(digit_arrays):
    """A resnet10t ``Predictor`` at 32 px (ImageNet stats) whose head was trained on the first 1200 digits."""
    images, labels = digit_arrays
    cfg = ModelConfig(arch="resnet10t", n_out=10, input_size=(SIZE, SIZE))
    torch.manual_seed(0)
    model = build_model(cfg, pretrained=False).eval()
    pred = Predictor(model, VOCAB, [Resize(SIZE)], imagenet_stats, device="cpu", model_config=cfg)
    train_head(model, pred.spec, images[:1200], labels[:1200])
    return pred


@pytest.fixture(scope="session")
def fp32_graph(digits_predictor, tmp_path_factory):
    """The predictor's fp32 ONNX graph (uint8 in, probabilities out), as bytes."""
    from vision_tl.inference.onnx import export_onnx

    return export_onnx(digits_predictor, tmp_path_factory.mktemp("graph") / "fp32.onnx").read_bytes()


@pytest.fixture(scope="session")
def digits_folder(digit_arrays, tmp_path_factory):
    """``root/<digit>/<i>.png``: 200 held-out digits (not the ones the head was trained on), 32 px RGB."""
    from PIL import Image

    images, labels = digit_arrays
    root = tmp_path_factory.mktemp("digits")
    for i in range(1200, 1400):
        d = root / VOCAB[labels[i]]
        d.mkdir(exist_ok=True)
        Image.fromarray(images[i].transpose(1, 2, 0)).save(d / f"{i}.png")
    return root
