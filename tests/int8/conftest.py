"""Fixtures for the int8 tests: a resnet10t that really reads scikit-learn's digits (about 90% on held-out
digits), as arrays and as a folder of PNGs, and its fp32 ONNX graph. Only the head is trained, on features of
the random body computed once, so the model takes seconds to make."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vision_tl.data.batch_tfms import imagenet_stats
from vision_tl.data.item_tfms import Resize
from vision_tl.inference.predict import Predictor
from vision_tl.models.build import ModelConfig, build_model
from vision_tl.models.predict_step import prepare_batch

SIZE = 32
VOCAB = [str(d) for d in range(10)]


def digits(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 RGB ``(N, 3, size, size)`` and their labels, in a seeded random order."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    img = torch.from_numpy((x.reshape(-1, 1, 8, 8) * 255 / 16).astype(np.uint8)).repeat(1, 3, 1, 1)
    img = F.interpolate(img.float(), size=(size, size), mode="bilinear").round().clamp(0, 255).to(torch.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    return img.numpy()[order], y[order]


def train_head(model: torch.nn.Module, spec, images: np.ndarray, labels: np.ndarray, steps: int = 100) -> None:
    """Fit ``model[1]`` (the head) on ``model[0]``'s features of ``images`` (uint8 NCHW); the body stays random."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread beats a contended pool on a shared machine
    try:
        torch.manual_seed(0)
        model.eval()
        with torch.no_grad():
            feats = model[0](prepare_batch(torch.from_numpy(images), spec, batch_tfms=True))
        head, y = model[1], torch.from_numpy(labels).long()
        opt = torch.optim.AdamW(head.parameters(), 3e-2)
        head.train()
        for _ in range(steps):
            b = torch.randperm(len(y))[:256]
            loss = F.cross_entropy(head(feats[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)


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
