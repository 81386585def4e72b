"""A real, deliberately damaged image set for the doctor's tests: scikit-learn's handwritten digits
(8x8 scans) upscaled to 32 px, class-per-folder in train/ and valid/, with labels flipped, broken files,
exact and near copies and a train/valid leak planted; the fixture says where each one is."""

from __future__ import annotations

import pytest

from .helpers import Planted, make_digits_set

pytest.importorskip("sklearn.datasets", reason="pip install 'vision_tl[doctor]'")
pytest.importorskip("cleanlab", reason="pip install 'vision_tl[doctor]'")
pytest.importorskip("imagehash", reason="pip install 'vision_tl[doctor]'")








@pytest.fixture
def digits_set(tmp_path) -> Planted:
    return make_digits_set(tmp_path / "digits")


@pytest.fixture(scope="module")
def digits_module(tmp_path_factory) -> Planted:
    """One planted set for a whole test module (the doctor runs once on it)."""
    return make_digits_set(tmp_path_factory.mktemp("doctor") / "digits")
