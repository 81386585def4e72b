"""The fastai book's cells that failed with ``from vision_tl.all import *`` (issue 21), as small examples.

Each test is one idiom from the intro, production, pet-breeds, multi-label, sizing or CAM chapter,
on tiny synthetic data (no download, resnet10t at 32 px, untrained).
"""

from __future__ import annotations

import pickle
import warnings

import pandas as pd
import pytest
import torch
from PIL import Image as PILModule

import vision_tl.all as va
from vision_tl.data.synthetic import make_synthetic_multi_label
from vision_tl.inference.fastai_names import FastaiNameNote
from vision_tl.train import precision

FAST = {"num_workers": 0, "bs": 8}


@pytest.fixture(scope="module")
def dls(class_folder):
    return va.ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=va.Resize(32), **FAST)


@pytest.fixture(scope="module")
def learn(dls):
    return va.vision_learner(dls, "resnet10t", pretrained=False, metrics=va.error_rate, device="cpu")


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    """PASCAL-like: ``train/<fname>`` images and ``train.csv`` with fname, labels, is_valid."""
    root = make_synthetic_multi_label(tmp_path_factory.mktemp("pascal"), n_images=16, size=32)
    df = pd.read_csv(root / "labels.csv")
    df["fname"] = df["fname"].str.replace("images/", "", regex=False)
    (root / "images").rename(root / "train")
    return root, df


# ---- paths and lists ------------------------------------------------------------------------------
def test_untar_data_gives_a_path_with_ls_shown_relative_to_base_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VISION_TL_HOME", str(tmp_path))
    (tmp_path / "data" / "oxford-iiit-pet" / "images").mkdir(parents=True)
    (tmp_path / "data" / "oxford-iiit-pet" / "annotations").mkdir()
    path = va.untar_data(va.URLs.PETS)  # already there: no network
    monkeypatch.setattr(va.Path, "BASE_PATH", path)
    assert repr(path.ls()) == "(#2) [Path('annotations'), Path('images')]"
    assert (path / "images").ls() == [] and isinstance(path / "images", va.Path)
    assert va.URLs.PASCAL_2007.endswith("pascal_2007.tgz")


def test_get_image_files_and_verify_images_give_L_with_map(tmp_path, class_folder):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    fns = va.get_image_files(tmp_path) + va.get_image_files(class_folder)[:2]
    failed = va.verify_images(fns)
    assert isinstance(va.get_image_files(class_folder), va.L) and isinstance(failed, va.L) and failed == [bad]
    failed.map(va.Path.unlink)
    assert not bad.exists() and hasattr(fns[0], "ls")


# ---- one callback or metric, not in a list ----------------------------------------------------------
def test_one_callback_and_one_metric_are_taken_without_a_list(dls):
    learn = va.vision_learner(dls, "resnet10t", pretrained=False, device="cpu", cbs=va.MixUp(),
                              metrics=va.partial(va.accuracy_multi, thresh=0.2, sigmoid=False))
    assert any(isinstance(c, va.MixUp) for c in learn.cbs) and len(learn.metrics) == 1
    learn.metrics = va.error_rate  # the multi-label chapter sets one metric on the learner, then validates
    assert learn.metrics == [va.error_rate] and len(learn.validate()) == 2
    with pytest.raises(TypeError, match="metrics must be functions"):
        learn.metrics = 0.5


# ---- the multi-label chapter's step-by-step DataBlock ----------------------------------------------------
def test_datablock_without_blocks_passes_items_through(pascal):
    path, df = pascal
    dsets = va.DataBlock().datasets(df)
    assert len(dsets.train) + len(dsets.valid) == len(df)
    x, y = dsets.train[0]
    assert x["fname"] == y["fname"]  # the row, twice
    dsets = va.DataBlock(get_x=lambda r: r["fname"], get_y=lambda r: r["labels"]).datasets(df)
    assert all(isinstance(v, str) for v in dsets.train[0])  # strings, no file opened
    dsets = va.DataBlock(get_x=lambda r: path / "nothere" / r["fname"], get_y=lambda r: r["labels"].split(" ")
                         ).datasets(df)
    assert isinstance(dsets.train[0][1], list)  # a missing file is fine until a block decodes it


def test_datablock_with_blocks_gives_a_pil_image_and_a_multi_category_tensor(pascal):
    path, df = pascal

    def splitter(df):
        return df.index[~df["is_valid"]].tolist(), df.index[df["is_valid"]].tolist()

    dblock = va.DataBlock(blocks=(va.ImageBlock, va.MultiCategoryBlock), splitter=splitter,
                          get_x=lambda r: path / "train" / r["fname"], get_y=lambda r: r["labels"].split(" "))
    dsets = dblock.datasets(df)
    img, y = dsets.train[0]
    assert isinstance(img, va.PILImage) and type(y).__name__ == "TensorMultiCategory"
    idxs = torch.where(y == 1.0)[0]
    assert list(dsets.train.vocab[idxs]) == sorted(df.loc[~df.is_valid, "labels"].iloc[0].split(" "))
    assert len(dsets.valid) == int(df.is_valid.sum())
    x, yb = va.to_cpu(dblock.dataloaders(df, **FAST).train.one_batch())
    assert x.device.type == "cpu" and yb.shape[1] == len(dsets.vocab)


def test_one_class_datablock_shows_batches_but_a_learner_refuses_it(class_folder):
    one = va.get_image_files(class_folder)[0]
    dls1 = va.DataBlock(blocks=(va.ImageBlock(), va.CategoryBlock()), get_y=va.parent_label,
                        item_tfms=va.Resize(32)).dataloaders([one] * 20, **FAST)
    x, _ = dls1.valid.one_batch()
    assert x.shape[1:] == (3, 32, 32)
    with pytest.raises(ValueError, match="only one class"):
        va.vision_learner(dls1, "resnet10t", pretrained=False, device="cpu")


def test_point_block_says_keypoints_are_out_of_scope():
    with pytest.raises(NotImplementedError, match="out of scope"):
        va.DataBlock(blocks=(va.ImageBlock, va.PointBlock))


# ---- names ------------------------------------------------------------------------------------------------
def test_resize_method_names(class_folder):
    block = va.DataBlock(blocks=(va.ImageBlock, va.CategoryBlock), get_items=va.get_image_files, get_y=va.parent_label)
    for tfm in (va.Resize(32, va.ResizeMethod.Squish), va.Resize(32, va.ResizeMethod.Pad, pad_mode="zeros"),
                va.Resize(32, va.ResizeMethod.Crop)):
        assert block.new(item_tfms=tfm).dataloaders(class_folder, **FAST).one_batch()[0].shape[-2:] == (32, 32)
    assert va.PadMode.Zeros == "zeros" and va.SimpleNamespace(a=1).a == 1


def test_dls_vocab_loss_func_and_decode(dls):
    assert isinstance(dls.vocab, list) and dls.vocab.o2i[dls.vocab[1]] == 1
    assert dls.vocab[torch.tensor([0, 2])] == [dls.vocab[0], dls.vocab[2]]
    assert isinstance(dls.loss_func, va.CrossEntropyLossFlat)
    norm = va.Normalize.from_stats(*va.imagenet_stats)
    dl = dls.new(batch_tfms=[norm]).valid
    x, y = dl.one_batch()
    raw = dls.valid.one_batch()[0]  # the same items without Normalize
    xd, yd = dl.decode((x, y))
    assert isinstance(xd, va.TensorImage) and torch.allclose(xd, raw.clamp(0, 1), atol=1e-5)
    assert type(yd).__name__ == "TensorCategory"
    pairs = dl.decode_batch((x, y), max_n=3)
    assert [lab for _, lab in pairs] == [dls.vocab[int(k)] for k in y[:3]]


def test_tensor_image_show_draws_on_the_given_axes(dls):
    import matplotlib.pyplot as plt

    x, _ = dls.valid.one_batch()
    _, ax = plt.subplots()
    assert va.TensorImage(dls.train.decode((x,))[0][0]).show(ctx=ax) is ax and len(ax.images) == 1
    plt.close("all")


def test_to_thumb_on_image_open_without_patching_pillow(class_folder):
    im = va.Image.open(va.get_image_files(class_folder)[0])
    assert isinstance(im, PILModule.Image) and im.format == "JPEG"
    assert max(im.to_thumb(16).size) == 16
    assert not hasattr(PILModule.Image, "to_thumb") and not hasattr(PILModule.open(im.filename), "to_thumb")


def test_download_images_fetches_urls_and_says_clearly_when_offline(tmp_path, class_folder):
    src = va.get_image_files(class_folder)[:2]
    va.download_images(tmp_path / "ok", urls=[p.as_uri() for p in src])
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["00000000.jpg", "00000001.jpg"]
    with pytest.raises(va.DownloadError, match="none of the 1 URLs.*copy the images"):
        va.download_images(tmp_path / "off", urls=[(tmp_path / "missing.jpg").as_uri()])


# ---- export names ------------------------------------------------------------------------------------------
def test_export_pkl_names_write_and_find_the_safe_format(learn, tmp_path, monkeypatch, class_folder):
    monkeypatch.chdir(tmp_path)
    learn.path = tmp_path
    learn.export()
    assert va.Path().ls(file_exts=".vtl") == [va.Path("export.vtl")]
    with pytest.warns(FastaiNameNote, match="export.pkl not found: loading export.vtl"):
        inf = va.load_learner(va.Path() / "export.pkl")
    assert inf.dls.vocab == list(learn.dls.vocab)
    with pytest.warns(FastaiNameNote, match="not a pickle"):
        learn.export("model.pkl")
    assert (tmp_path / "model.pkl").read_bytes()[8:9] == b"{"  # safetensors, not a pickle
    with pytest.warns(FastaiNameNote, match="model.pkl: a vision_tl export"):
        va.load_learner("model.pkl").predict(va.get_image_files(class_folder)[0])
    (tmp_path / "fastai.pkl").write_bytes(pickle.dumps({"a fastai": "Learner"}))
    with pytest.raises(Exception, match="Python pickle.*never unpickles"):
        va.load_learner("fastai.pkl")


# ---- plots are drawn once ----------------------------------------------------------------------------------
def test_plots_return_nothing_unless_asked(learn):
    import matplotlib.pyplot as plt

    interp = va.ClassificationInterpretation.from_learner(learn)
    assert interp.plot_confusion_matrix() is None and interp.plot_top_losses(2, nrows=1) is None
    assert learn.show_results(max_n=2) is None
    assert hasattr(interp.plot_confusion_matrix(return_fig=True), "savefig")
    plt.close("all")


# ---- to_fp16 on a CPU ------------------------------------------------------------------------------------------
def _amp_dtypes(learn) -> list:
    return [c.dtype for c in learn.cbs if isinstance(c, va.MixedPrecision)]


def test_to_fp16_on_a_cpu_without_fast_half_precision_warns_once_and_stays_float32(learn, monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))  # slow bf16 (issue 21)
    monkeypatch.setattr(precision, "_warned", set())
    with pytest.warns(UserWarning, match="no fast float16.*float32"):
        learn.to_fp16()
    assert _amp_dtypes(learn) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.to_fp16()  # once per process
    assert _amp_dtypes(learn.to_fp16(force=True)) == [torch.float16]
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert _amp_dtypes(learn.to_fp16()) == [torch.bfloat16]
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16", "amx_fp16"}))
    assert _amp_dtypes(learn.to_fp16()) == [torch.float16]
    assert _amp_dtypes(learn.to_fp32()) == [] and learn.scaler is None


def test_cpu_flags_reads_the_kernels_list():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    assert precision.fast_autocast_dtype(torch.device("cpu"), torch.float16) in (None, torch.float16, torch.bfloat16)
