"""``from vision_tl.all import *`` gives a fastai notebook's names; fastai's small helpers behave like fastai's."""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

import vision_tl


@pytest.fixture(scope="module")
def ns():
    names: dict = {}
    exec("from vision_tl.all import *", names)
    return names


def test_star_import_gives_the_public_api_and_the_notebook_names(ns):
    missing = [n for n in vision_tl._EXPORTS if n not in ns]
    assert not missing
    for name in ("torch", "nn", "F", "np", "pd", "plt", "Path", "partial", "math", "os", "re", "random", "Image",
                 "tensor", "first", "L"):
        assert name in ns, name
    assert ns["nn"] is torch.nn and ns["np"] is np
    # PIL's module, every name PIL's own; only Image.open adds fastai's to_thumb (issue 21)
    assert ns["Image"].Image is Image.Image and ns["Image"].fromarray is Image.fromarray
    assert ns["resnet34"] is __import__("torchvision").models.resnet34


def test_path_ls_lists_a_folder_as_an_L_without_patching_pathlib(ns, tmp_path):
    for name in ("b.jpg", "a.jpg", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    p = ns["Path"](tmp_path)
    files = p.ls()
    assert [f.name for f in files] == ["a.jpg", "b.jpg", "c.txt"] and isinstance(files[0], ns["Path"])
    assert repr(files).startswith("(#3) [")
    assert [f.name for f in p.ls(file_exts=".txt")] == ["c.txt"] and len(p.ls(n_max=2)) == 2
    assert isinstance(p / "a.jpg", ns["Path"]) and not hasattr(pathlib.Path, "ls")


def test_L_repr_shows_the_count_and_the_first_ten(ns):
    r = repr(ns["L"](range(12)))
    assert r.startswith("(#12) [0, 1, 2") and r.endswith("9, ...]")
    assert ns["L"]([1, 2, 3]).map(lambda x: x * 2) == [2, 4, 6]


def test_tensor_and_first_behave_like_fastais(ns):
    tensor, first = ns["tensor"], ns["first"]
    assert tensor(1, 2, 3).tolist() == [1, 2, 3] and tensor([[1, 2]]).shape == (1, 2)
    assert tensor(Image.new("RGB", (5, 4))).shape == (4, 5, 3)
    assert tensor(np.zeros((2, 2), np.uint8)).dtype == torch.uint8
    assert first([3, 4, 5]) == 3 and first([3, 4, 5], lambda x: x > 3) == 4 and first([]) is None


def test_pilimage_create_takes_paths_bytes_arrays_and_tensors(ns, tmp_path):
    PILImage, PILImageBW = ns["PILImage"], ns["PILImageBW"]
    arr = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    for src in (tmp_path / "a.png", str(tmp_path / "a.png"), buf.getvalue(), arr, torch.from_numpy(arr).permute(2, 0, 1)):
        img = PILImage.create(src)
        assert isinstance(img, Image.Image) and isinstance(img, PILImage) and img.mode == "RGB"
        assert img.shape == (20, 30) and np.array_equal(np.asarray(img), arr)
    bw = PILImageBW.create(tmp_path / "a.png")
    assert bw.mode == "L" and bw.shape == (20, 30)
    thumb = PILImage.create(arr).to_thumb(10)
    assert max(thumb.size) == 10 and thumb.size == (10, 7) and max(ns["to_thumb"](thumb, 5).size) == 5
    with pytest.raises(vision_tl.ImageError, match="missing.png"):
        PILImage.create(tmp_path / "missing.png")


def test_show_image_and_show_images_draw_pil_arrays_and_tensors(ns):
    img = Image.new("RGB", (8, 6), "red")
    ax = ns["show_image"](img, title="red", figsize=(2, 2))
    assert ax.get_title() == "red" and ax.images[0].get_array().shape == (6, 8, 3)
    ax = ns["show_image"](torch.rand(3, 6, 8))
    assert ax.images[0].get_array().shape == (6, 8, 3)
    fig = ns["show_images"]([img, np.zeros((6, 8), np.uint8), torch.rand(1, 6, 8)], titles=["a", "b", "c"])
    assert [a.get_title() for a in fig.axes] == ["a", "b", "c"]
