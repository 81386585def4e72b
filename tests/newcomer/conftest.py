"""Fixtures of the newcomer tests: a small folder with bad files planted, and a tiny exported model."""

from __future__ import annotations

import shutil

import pytest

from .helpers import cut_jpeg


@pytest.fixture
def bad_tv_folder(train_valid_folder, tmp_path):
    """``train_valid_folder`` copied, with a cut JPEG and a text file in valid/ and a text file in train/."""
    root = tmp_path / "data"
    shutil.copytree(train_valid_folder, root)
    cls = sorted(p.name for p in (root / "valid").iterdir())
    cut_jpeg(root / "valid" / cls[0] / "cut.jpg")
    (root / "valid" / cls[1] / "notes.jpg").write_text("not an image")
    (root / "train" / cls[1] / "broken.jpg").write_text("not an image either")
    return root


@pytest.fixture(scope="session")
def tiny_model(class_folder, tmp_path_factory):
    """An untrained resnet10t exported from ``class_folder`` (its training files are in the manifest)."""
    from vision_tl import ImageDataLoaders, Resize, vision_learner

    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=8,
                                       num_workers=0)
    learn = vision_learner(dls, "resnet10t", pretrained=False)
    return learn.export(tmp_path_factory.mktemp("tiny") / "tiny.vtl", verbose=False), dls
