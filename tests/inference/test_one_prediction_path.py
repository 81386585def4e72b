"""One prediction path: get_preds, a loaded export, TTA without augmentation and ONNX agree on the same files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vision_tl import ImageDataLoaders, Resize, load_learner, vision_learner
from vision_tl.inference.onnx import onnx_session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def learn(class_folder, tmp_path_factory):
    """resnet10t trained one epoch on 32 px squished images: no random transform anywhere, so a
    TTA pass with the training transforms is the plain validation pass."""
    torch.manual_seed(0)
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(32, method="squish"),
                                       bs=8, num_workers=0, device="cpu")
    learn = vision_learner(dls, "resnet10t", pretrained=False, path=tmp_path_factory.mktemp("path"))
    learn.fit_one_cycle(1, 1e-3)
    return learn


def test_get_preds_load_learner_tta_and_onnx_give_the_same_probabilities(learn, tmp_path):
    files = list(learn.dls.valid_ds.items)
    preds, _ = learn.get_preds()
    loaded = load_learner(learn.export(tmp_path / "m.vtl"), device="cpu")
    batch = loaded.predict_batch(files, progress=False)
    tta, _ = learn.tta(n=2)
    onnx_path = learn.export_onnx(tmp_path / "m.onnx")
    images = np.stack([loaded.preprocess(f).transpose(2, 0, 1) for f in files])
    sess = onnx_session(onnx_path)
    onnx = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: images})[0])
    assert preds.shape == (len(files), learn.dls.c)
    assert not torch.allclose(preds, preds.mean(0, keepdim=True), atol=1e-3)  # predictions differ per image
    for name, other in (("load_learner", batch), ("tta", tta), ("onnx", onnx)):
        assert torch.allclose(other, preds, atol=1e-4), f"{name}: max diff {float((other - preds).abs().max()):.2e}"
