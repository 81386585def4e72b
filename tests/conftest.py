"""Shared fixtures: seeded synthetic image sets written once per test session."""

from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("MPLBACKEND", "Agg")
# load_learner's default "auto" builds an ONNX graph (seconds) for each new file: tests that are not about
# the backend use torch; tests/inference/test_backends.py asks for each backend by name
os.environ.setdefault("VISION_TL_BACKEND", "torch")
# ONNX graphs are cached per user (inference/graph_cache.py): the tests' go to a folder of their own
os.environ.setdefault("VISION_TL_CACHE", os.path.join(tempfile.gettempdir(), f"vision_tl-test-cache-{os.getpid()}"))

from vision_tl.data.synthetic import make_synthetic_folder, make_synthetic_pets  # noqa: E402

from .tinydata import TinyDLs  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests without CUDA and ``network`` tests always (no outside network here)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "network" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs the outside network"))


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state."""
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def class_folder(tmp_path_factory):
    """``root/<class>/<class>_<i>.jpg``: 3 classes x 12 images, 48-96 px, varied aspect ratios."""
    return make_synthetic_folder(tmp_path_factory.mktemp("classes"), n_per_class=12, seed=1)


@pytest.fixture(scope="session")
def train_valid_folder(tmp_path_factory):
    """``root/{train,valid}/<class>/...``: 3 classes x 8 images per split."""
    return make_synthetic_folder(
        tmp_path_factory.mktemp("tv"), n_per_class=8, splits=("train", "valid"), seed=2
    )


@pytest.fixture(scope="session")
def pets_folder(tmp_path_factory):
    """Oxford-IIIT-Pet-like ``root/images/Breed_N.jpg`` (cat = capitalised breed), 48 images."""
    return make_synthetic_pets(tmp_path_factory.mktemp("pets"), n_images=48, n_breeds=3, seed=3)


@pytest.fixture
def tiny_dls():
    """``TinyDLs``: in-memory DataLoaders of tiny tensors for fast Learner tests; call it with
    ``n``, ``c``, ``size``, ``bs``, ``seed`` (see ``tests/tinydata.py``)."""
    return TinyDLs
