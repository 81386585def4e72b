"""Hooks (fastai's CAM chapter) and the built-in Grad-CAM, on timm and torchvision bodies and a loaded .vtl."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vision_tl import vision_learner
from vision_tl.data.batch_tfms import imagenet_stats
from vision_tl.data.factories import ImageDataLoaders
from vision_tl.data.item_tfms import Resize
from vision_tl.inference.load import load_learner
from vision_tl.models.archs import resnet18
from vision_tl.models.build import ModelConfig, build_model
from vision_tl.models.hooks import hook_output, hook_outputs
from vision_tl.train.callbacks import Callback

SIZE = 64


def _image(kind: str, side: str, rng: np.random.Generator) -> np.ndarray:
    """Mid-grey noise with a striped half (vertical or horizontal stripes, left or right), or none ("plain")."""
    a = rng.integers(100, 140, (SIZE, SIZE, 3)).astype(np.uint8)
    stripes = (np.arange(SIZE) // 4 % 2 * 200 + 30).astype(np.uint8)
    patch = np.broadcast_to(stripes[None, :, None] if kind == "vertical" else stripes[:, None, None], (SIZE, SIZE, 3))
    half = slice(0, SIZE // 2) if side == "left" else slice(SIZE // 2, SIZE)
    if kind != "plain":
        a[:, half] = patch[:, half]
    return a


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    """48 images: stripes on the left or right half, vertical or horizontal, or none ("plain": so the
    evidence for a striped class has to be its stripes, not the absence of the other class's)."""
    root = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(0)
    for kind in ("vertical", "horizontal", "plain"):
        (root / kind).mkdir()
        for i in range(16):
            Image.fromarray(_image(kind, "left" if i % 2 else "right", rng)).save(root / kind / f"{i}.png")
    return root


def _trained(root, arch):
    """Head-only training on a frozen random body: cheap, and random conv features tell stripe directions apart."""
    torch.manual_seed(0)
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0, item_tfms=Resize(SIZE), bs=8, num_workers=0,
                                       device="cpu")
    learn = vision_learner(dls, arch, pretrained=False, device="cpu", lin_ftrs=[], ps=0.0, train_bn=False)
    learn.freeze()
    learn.fit_one_cycle(4, 1e-2, cbs=[_BodyInEvalMode()])
    return learn


class _BodyInEvalMode(Callback):
    """Keep the random body's BatchNorm on its running stats, so training and prediction see the same features."""

    def before_train(self):
        self.learn.model[0].eval()


def _probe(tmp_path, kind, side, seed=1):
    f = tmp_path / f"probe_{kind}_{side}.png"
    Image.fromarray(_image(kind, side, np.random.default_rng(seed))).save(f)
    return f


def _assert_cam_finds_the_stripes(source, tmp_path, stage=None):
    """Grad-CAM of the predicted class is stronger on the striped half than on the plain one, for every
    direction and side (``stage``: a body stage to use instead of the whole body)."""
    for kind in ("vertical", "horizontal"):
        for side in ("left", "right"):
            f = _probe(tmp_path, kind, side)
            assert source.predict(f)[0] == kind
            cam = source.grad_cam(f, layer=None if stage is None else source.model[0][stage])
            assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32 and 0 <= cam.min() and cam.max() <= 1
            left, right = float(cam[:, : SIZE // 2].mean()), float(cam[:, SIZE // 2:].mean())
            striped, plain = (left, right) if side == "left" else (right, left)
            assert striped > plain + 0.1, (kind, side, left, right)


def test_hook_output_stores_the_body_activation_and_removes_itself():
    model = build_model(ModelConfig(arch="resnet10t", n_out=2)).eval()
    with hook_output(model[0]) as hook:
        model(torch.zeros(2, 3, SIZE, SIZE))
        assert hook.stored.shape == (2, 512, 2, 2) and not hook.stored.requires_grad
    assert not model[0]._forward_hooks  # removed on leaving the block
    x = torch.zeros(1, 3, SIZE, SIZE, requires_grad=True)
    with hook_output(model[0], grad=True) as hook_g, hook_outputs([model[0][0], model[0][-1]]) as hooks:
        model(x)[0, 1].backward()
        assert [tuple(s.shape) for s in hooks.stored] == [(1, 64, 32, 32), (1, 512, 2, 2)]
    assert hook_g.stored[0].shape == (1, 512, 2, 2)
    assert not model[0]._backward_hooks and not model[0][-1]._forward_hooks


@pytest.mark.slow
def test_grad_cam_highlights_the_evidence_with_a_timm_body_in_memory_and_loaded(stripes, tmp_path):
    learn = _trained(stripes, "resnet10t")
    _assert_cam_finds_the_stripes(learn, tmp_path)
    loaded = load_learner(learn.export(tmp_path / "timm.vtl"), device="cpu")
    _assert_cam_finds_the_stripes(loaded, tmp_path)
    ax = loaded.show_cam(_probe(tmp_path, "horizontal", "right"), target="vertical")
    assert ax.get_title().startswith("vertical")


@pytest.mark.slow
def test_grad_cam_highlights_the_evidence_with_a_torchvision_body_in_memory_and_loaded(stripes, tmp_path):
    learn = _trained(stripes, resnet18)
    last = learn.model[0][-1]  # the body's last child is resnet18's last stage (layer4), as in fastai
    assert [type(b).__name__ for b in last] == ["BasicBlock", "BasicBlock"] and last[-1].conv2.out_channels == 512
    # at 64 px the random body's last stages are 2x2 maps that each see the whole image: use layer2 (8x8)
    _assert_cam_finds_the_stripes(learn, tmp_path, stage=-3)
    loaded = load_learner(learn.export(tmp_path / "tv.vtl"), device="cpu")
    _assert_cam_finds_the_stripes(loaded, tmp_path, stage=-3)
    f = _probe(tmp_path, "horizontal", "right")
    np.testing.assert_allclose(loaded.grad_cam(f), learn.grad_cam(f), atol=1e-4)
    assert list(loaded.dls.vocab) == list(learn.dls.vocab)


def test_grad_cam_names_a_bad_target_and_a_layer_without_nchw_output(tmp_path):
    from vision_tl.inference.predict import Predictor

    cfg = ModelConfig(arch="resnet10t", n_out=2, input_size=(SIZE, SIZE))
    pred = Predictor(build_model(cfg).eval(), ["a", "b"], [Resize(SIZE)], imagenet_stats, device="cpu")
    f = _probe(tmp_path, "vertical", "left")
    with pytest.raises(ValueError, match="target 'c' is not a class"):
        pred.grad_cam(f, target="c")
    with pytest.raises(ValueError, match="must output NCHW features, got shape \\(1, 2\\)"):
        pred.grad_cam(f, layer=pred.model[1])
