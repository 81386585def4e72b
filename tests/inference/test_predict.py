"""Predict one image from any input type, many images in batches, top-k; errors name the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vision_tl.data.images import ImageError, load_rgb
from vision_tl.inference.predict import to_rgb_array


def test_predict_returns_label_index_probs(predictor, image_files):
    label, idx, probs = predictor.predict(image_files[0])
    assert isinstance(label, str) and label == predictor.vocab[idx]
    assert probs.shape == (3,) and probs.dtype == torch.float32
    assert idx == int(probs.argmax()) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_every_input_type_gives_the_same_prediction(predictor, image_files):
    f = image_files[0]
    arr = load_rgb(f)
    inputs = {
        "str": str(f),
        "path": f,
        "bytes": f.read_bytes(),
        "pil": Image.open(f),
        "numpy_hwc": arr,
        "tensor_chw": torch.from_numpy(arr).permute(2, 0, 1).contiguous(),
        "tensor_hwc": torch.from_numpy(arr),
    }
    ref = predictor.predict(arr)[2]
    for name, item in inputs.items():
        torch.testing.assert_close(predictor.predict(item)[2], ref, msg=name, atol=1e-6, rtol=1e-5)


def test_greyscale_arrays_are_expanded_to_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_rgb_array(grey)
    assert out.shape == (3, 4, 3) and (out[..., 0] == grey).all() and (out[..., 2] == grey).all()
    assert to_rgb_array(torch.from_numpy(grey)[None]).shape == (3, 4, 3)


@pytest.mark.parametrize(
    "item, match",
    [
        (np.zeros((8, 8, 3), np.float32), "uint8.*float32"),
        (np.zeros((8, 8, 5), np.uint8), r"shape \(8, 8, 5\)"),
        (torch.zeros(3, 8, 8), "uint8.*torch.float32"),
        (12345, "got int"),
    ],
)
def test_bad_inputs_are_refused_with_what_was_received(predictor, item, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(item)


def test_unreadable_file_is_named(predictor, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        predictor.predict(bad)


def test_top_k_is_sorted_and_consistent_with_predict(predictor, image_files):
    top = predictor.top_k(image_files[1], k=3)
    probs = predictor.predict(image_files[1])[2]
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][0] == predictor.predict(image_files[1])[0]
    assert top[0][1] == pytest.approx(float(probs.max()))
    with pytest.raises(ValueError, match="k must be in"):
        predictor.top_k(image_files[1], k=4)


def test_predict_batch_matches_predict_one_by_one(predictor, image_files):
    files = image_files[:7]
    probs = predictor.predict_batch(files, bs=3, num_workers=0, progress=False)
    assert probs.shape == (7, 3)
    expected = torch.stack([predictor.predict(f)[2] for f in files])
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-4)
    assert predictor.decode(probs) == [predictor.predict(f)[0] for f in files]


@pytest.mark.slow
def test_predict_batch_with_workers_keeps_order_and_names_bad_file(predictor, image_files, tmp_path):
    files = image_files[:6]
    one = predictor.predict_batch(files, bs=2, num_workers=0, progress=False)
    two = predictor.predict_batch(files, bs=2, num_workers=2, progress=False)
    torch.testing.assert_close(one, two)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ImageError, match="corrupt.jpg"):
        predictor.predict_batch([*files, bad], bs=2, num_workers=2, progress=False)


def test_predict_batch_of_nothing_is_empty(predictor):
    assert predictor.predict_batch([], progress=False).shape == (0, 3)


def test_predict_leaves_training_mode_as_it_was(predictor, image_files):
    predictor.model.train()
    a = predictor.predict(image_files[0])[2]
    assert predictor.model.training
    b = predictor.predict(image_files[0])[2]
    torch.testing.assert_close(a, b)  # eval mode inside: BatchNorm/Dropout deterministic


@pytest.mark.gpu
def test_cuda_predict_with_amp_agrees_with_cpu(exported, image_files):
    from vision_tl import load_learner

    path, _ = exported
    cpu, gpu = load_learner(path, device="cpu"), load_learner(path, device="cuda")
    for f in image_files[:3]:
        a, b = cpu.predict(f), gpu.predict(f)
        assert b[2].device.type == "cpu" and b[2].dtype == torch.float32
        torch.testing.assert_close(a[2], b[2], atol=2e-2, rtol=0)
    batch = gpu.predict_batch(image_files[:5], bs=2, progress=False)
    torch.testing.assert_close(batch, cpu.predict_batch(image_files[:5], bs=2, progress=False), atol=2e-2, rtol=0)
