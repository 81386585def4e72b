"""The Python side: ``vision_tl.doctor`` stays callable, takes any DataLoaders, and says what it skipped."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _folder(root, n=6):
    for k in range(n):
        d = root / ("a" if k % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / f"{k}.png")
    return root


def test_doctor_is_callable_even_after_a_submodule_import_and_takes_dataloaders(tmp_path):
    import vision_tl.doctor.apply  # noqa: F401 - binds the package to the name `doctor`

    root = _folder(tmp_path / "data")
    dls = vision_tl.ImageDataLoaders.from_folder(root, valid_pct=0.5, seed=0, bs=2, num_workers=0, device="cpu")
    report = vision_tl.doctor(dls, check_labels=False, progress=False, num_workers=1)
    assert report["files"] == 6 and report["classes"] == {"a": 3, "b": 3} and report["split"] == {"train": 3, "valid": 3}
    assert "suspect labels:    not checked" in report.summary()
    assert report["unreadable"] == [] and report["duplicates"] == []
