"""DataBlock as fastai documents it: folder-per-class, regex on names, a multi-label CSV, regression,
summary naming the failing step, new(), and the factories as DataBlock recipes."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import vision_tl
from vision_tl.data.batch_tfms import aug_transforms
from vision_tl.data.blocks import CategoryBlock, ImageBlock, MultiCategoryBlock, RegressionBlock
from vision_tl.data.datablock import DataBlock, GetterError
from vision_tl.data.factories import ImageDataLoaders
from vision_tl.data.item_tfms import RandomResizedCrop, Resize
from vision_tl.data.sources import (
    ColReader,
    LabelError,
    RegexLabeller,
    get_image_files,
    parent_label,
    using_attr,
)
from vision_tl.data.splitters import ColSplitter, GrandparentSplitter, RandomSplitter

FAST = {"num_workers": 0, "bs": 8}


@pytest.fixture
def multilabel_df(class_folder):
    """A PASCAL-like table: file name, space-separated labels (1-2 per image), is_valid."""
    files = get_image_files(class_folder)
    return pd.DataFrame({
        "fname": [f.relative_to(class_folder).as_posix() for f in files],
        "labels": [f.parent.name + (" person" if i % 3 == 0 else "") for i, f in enumerate(files)],
        "is_valid": [i % 4 == 0 for i in range(len(files))],
    })


def test_folder_per_class_datablock_labels_by_parent_folder_with_a_seeded_split(class_folder):
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                      splitter=RandomSplitter(valid_pct=0.25, seed=42), get_y=parent_label, item_tfms=Resize(16))
    dls = block.dataloaders(class_folder, **FAST)
    again = block.dataloaders(class_folder, **FAST)
    assert dls.vocab == ["circle", "square", "stripes"] and dls.c == 3
    assert len(dls.train_ds) == 27 and len(dls.valid_ds) == 9
    assert dls.valid_ds.items == again.valid_ds.items  # same split every run
    assert all(dls.vocab[y] == p.parent.name for p, y in zip(dls.train_ds.items, dls.train_ds.labels))
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 3, 16, 16) and xb.dtype == torch.float32 and yb.dtype == torch.int64


def test_grandparent_split_datablock_equals_from_folder(train_valid_folder):
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                      splitter=GrandparentSplitter(valid_name="valid"), item_tfms=Resize(16))
    dls = block.dataloaders(train_valid_folder, **FAST)
    fac = ImageDataLoaders.from_folder(train_valid_folder, item_tfms=Resize(16), **FAST)
    assert dls.vocab == fac.vocab and dls.valid_ds.items == fac.valid_ds.items
    assert dls.train_ds.labels == fac.train_ds.labels


def test_regex_on_name_datablock_like_the_pets_chapter(pets_folder):
    pets = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                     splitter=RandomSplitter(seed=42), get_y=using_attr(RegexLabeller(r"(.+)_\d+.jpg$"), "name"),
                     item_tfms=Resize(32), batch_tfms=aug_transforms(size=24, min_scale=0.75))
    dls = pets.dataloaders(pets_folder / "images", **FAST)
    assert all(dls.vocab[y] == p.name.rsplit("_", 1)[0] for p, y in zip(dls.train_ds.items, dls.train_ds.labels))
    assert dls.one_batch()[0].shape == (8, 3, 24, 24)
    fac = ImageDataLoaders.from_name_re(pets_folder / "images", get_image_files(pets_folder / "images"),
                                        r"(.+)_\d+.jpg$", seed=42, item_tfms=Resize(32), **FAST)
    assert fac.vocab == dls.vocab and fac.valid_ds.items == dls.valid_ds.items


def test_multi_label_csv_datablock_gives_one_hot_targets_with_a_vocab_over_all_labels(class_folder, multilabel_df):
    block = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), splitter=ColSplitter("is_valid"),
                      get_x=ColReader("fname", pref=str(class_folder) + os.path.sep),
                      get_y=ColReader("labels", label_delim=" "), item_tfms=Resize(16))
    dls = block.dataloaders(multilabel_df, **FAST)
    assert dls.vocab == ["circle", "person", "square", "stripes"] and dls.multi_label
    assert len(dls.valid_ds) == int(multilabel_df.is_valid.sum())
    xb, yb = dls.one_batch()
    assert yb.dtype == torch.float32 and yb.shape == (8, 4) and set(yb.sum(1).tolist()) <= {1.0, 2.0}
    first = dls.train_ds.items[0]
    row = multilabel_df[multilabel_df.fname == first.relative_to(class_folder).as_posix()].iloc[0]
    assert [dls.vocab[k] for k in np.flatnonzero(dls.train_ds[0][1])] == sorted(row["labels"].split())
    # the book's version: plain functions on a row, and a splitter function on the DataFrame
    book = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_x=lambda r: class_folder / r["fname"],
                     get_y=lambda r: r["labels"].split(" "), item_tfms=Resize(16),
                     splitter=lambda df: (df.index[~df["is_valid"]].tolist(), df.index[df["is_valid"]].tolist()))
    dsets = book.datasets(multilabel_df)
    assert dsets.vocab == dls.vocab and dsets.valid.items == dls.valid_ds.items
    fac = ImageDataLoaders.from_df(multilabel_df, class_folder, label_delim=" ", valid_col="is_valid",
                                   item_tfms=Resize(16), **FAST)
    assert fac.vocab == dls.vocab and fac.valid_ds.labels == dls.valid_ds.labels
    (_, ty), = list(dls.test_dl(multilabel_df.iloc[:3], with_labels=True))  # rows go through get_x/get_y
    assert ty.shape == (3, 4) and ty.dtype == torch.float32


def test_regression_block_gives_float_targets(class_folder):
    sizes = {p: float(len(p.name)) for p in get_image_files(class_folder)}
    block = DataBlock(blocks=(ImageBlock, RegressionBlock), get_items=get_image_files, get_y=sizes.__getitem__,
                      splitter=RandomSplitter(0.25, seed=0), item_tfms=Resize(16))
    dls = block.dataloaders(class_folder, **FAST)
    xb, yb = dls.one_batch()
    assert yb.dtype == torch.float32 and yb.shape == (8,) and dls.c == 1 and dls.target_kind == "regression"
    assert next(iter(dls.valid))[1].tolist() == [sizes[p] for p in dls.valid_ds.items[:8]]
    two = block.new(blocks=(ImageBlock, RegressionBlock(n_out=2)), get_y=lambda p: [sizes[p], 1.0])
    d2 = two.dataloaders(class_folder, **FAST)
    assert d2.one_batch()[1].shape == (8, 2) and d2.c == 2
    with pytest.raises(LabelError, match="get_y .* returned 'big'.*finite numbers"):
        block.new(get_y=lambda p: "big").dataloaders(class_folder, **FAST)


def test_get_y_list_of_functions_is_applied_in_turn(pets_folder):
    block = DataBlock(get_items=get_image_files, get_y=[lambda p: p.name, RegexLabeller(r"^(.+)_\d+")],
                      splitter=RandomSplitter(seed=1), item_tfms=Resize(16))
    dls = block.dataloaders(pets_folder, **FAST)
    assert all(dls.vocab[y] == p.name.rsplit("_", 1)[0] for p, y in zip(dls.train_ds.items, dls.train_ds.labels))


def test_summary_names_the_failing_step_and_the_item(pets_folder, class_folder, capsys):
    ok = DataBlock(get_items=get_image_files, get_y=parent_label, splitter=RandomSplitter(seed=0),
                   item_tfms=Resize(16), batch_tfms=aug_transforms())
    assert ok.summary(class_folder) is None
    out = capsys.readouterr().out
    for step in ("get_items", "splitter", "get_x", "get_y", "Vocab", "Decoded", "Resize", "Collated", "AffineWarp", "OK"):
        assert step in out

    def breed(name):
        return {"Abyssinian": "cat"}[name.split("_")[0]]

    bad_y = DataBlock(get_items=get_image_files, get_y=using_attr(breed, "name"), splitter=RandomSplitter(seed=0))
    text = bad_y.summary(pets_folder, print_it=False)
    failed = text.splitlines()[-1]
    assert failed.startswith("FAILED at get_y") and "KeyError" in failed and ".jpg" in failed
    with pytest.raises(LabelError, match=r"cannot label .*\.jpg: get_y .*breed.* raised KeyError"):
        bad_y.dataloaders(pets_folder, **FAST)
    bad_x = ok.new(get_x=lambda p: p.parent / "missing" / p.name)
    text = bad_x.summary(class_folder, print_it=False).splitlines()[-1]
    assert text.startswith("FAILED at get_x") and "missing/circle_" in text
    no_resize = ok.new(item_tfms=None, batch_tfms=None)
    assert "FAILED at collating a batch" in no_resize.summary(class_folder, print_it=False)
    table = DataBlock(get_y=ColReader("label"), item_tfms=Resize(16))
    text = table.summary(pd.DataFrame({"fname": ["a.jpg"] * 4, "label": list("abab")}), print_it=False)
    assert "FAILED at get_x" in text and "ColReader('fname'" in text


def test_new_is_a_copy_with_other_transforms(class_folder):
    block = DataBlock(get_items=get_image_files, get_y=parent_label, splitter=RandomSplitter(seed=0),
                      item_tfms=Resize(16))
    bigger = block.new(item_tfms=RandomResizedCrop(24, min_scale=0.3), batch_tfms=aug_transforms(mult=2))
    assert block.item_tfms == [Resize(16)] and block.batch_tfms == []
    a, b = block.dataloaders(class_folder, **FAST), bigger.dataloaders(class_folder, **FAST)
    assert a.one_batch()[0].shape[-1] == 16 and b.one_batch()[0].shape[-1] == 24
    assert a.valid_ds.items == b.valid_ds.items
    with pytest.raises(TypeError, match="unknown arguments \\['size'\\]"):
        block.new(size=3)
    a.batch_tfms.append(aug_transforms()[0])  # what a learner does to its loaders never reaches the block
    assert block.batch_tfms == []


def test_dataloaders_new_keeps_items_and_split_with_other_transforms_and_bs(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), **FAST)
    small = dls.new(item_tfms=Resize(24), bs=4)
    assert small.valid_ds.items == dls.valid_ds.items and small.train_ds.labels == dls.train_ds.labels
    assert small.one_batch()[0].shape == (4, 3, 24, 24) and small.valid.bs == 4 and small.vocab == dls.vocab
    assert dls.one_batch()[0].shape == (8, 3, 16, 16) and dls.item_tfms == [Resize(16)]  # unchanged
    assert small.train.seed == dls.train.seed


def test_test_dl_with_labels_gives_one_hot_targets_for_multi_label(class_folder):
    block = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_items=get_image_files, item_tfms=Resize(16),
                      get_y=lambda p: [p.parent.name, "shape"], splitter=RandomSplitter(seed=0))
    dls = block.dataloaders(class_folder, **FAST)
    items = get_image_files(class_folder)[:3]
    (_, yb), = list(dls.test_dl(items, with_labels=True))
    assert yb.tolist() == [[1.0, 1.0, 0.0, 0.0]] * 3  # circle + shape


def test_show_batch_titles_join_several_labels_and_unique_repeats_one_item(class_folder, multilabel_df):
    import matplotlib.pyplot as plt

    block = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), splitter=ColSplitter(),
                      get_x=ColReader("fname", pref=class_folder), get_y=ColReader("labels", label_delim=" "),
                      item_tfms=RandomResizedCrop(16))
    dls = block.dataloaders(multilabel_df, **FAST)
    # the validation set, in order: its first item (row 0) has two labels; a shuffled training batch of 8 may
    # hold none of the one-in-three two-label rows
    fig = dls.valid.show_batch(max_n=8, return_fig=True)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any(";" in t for t in titles) and all(set(t.split(";")) <= set(dls.vocab) for t in titles)
    assert dls.valid.show_batch(max_n=2) is None
    xb = dls.train.one_batch(unique=True)[0]
    assert not torch.equal(xb[0], xb[1])  # one item, different random crops
    vb = dls.valid.one_batch(unique=True)[0]
    assert torch.equal(vb[0], vb[1])  # no randomness outside training: the same image
    fig = dls.train.show_batch(max_n=4, unique=True, return_fig=True)
    assert len({ax.get_title() for ax in fig.axes if ax.get_title()}) == 1
    plt.close("all")


def test_datablock_rejects_what_it_cannot_build():
    with pytest.raises(TypeError, match="blocks must be \\(ImageBlock"):
        DataBlock(blocks=(CategoryBlock, ImageBlock))
    with pytest.raises(ValueError, match="one image input and one target"):
        DataBlock(blocks=(ImageBlock, CategoryBlock, CategoryBlock))
    with pytest.raises(TypeError, match="get_y must be a function"):
        DataBlock(get_y="label")
    with pytest.raises(TypeError, match="item_tfms must be item transforms"):
        DataBlock(item_tfms=224)
    with pytest.raises(ValueError, match="needs get_y"):  # with blocks; without, items pass through (the book's way)
        DataBlock(blocks=(ImageBlock, CategoryBlock)).datasets([__file__])
    with pytest.raises(GetterError, match="get_x .* gave Series.*ColReader"):
        DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=ColReader("y")).datasets(pd.DataFrame({"f": ["a", "b"], "y": [1, 2]}))
    with pytest.raises(ValueError, match="put 1 items in both sets"):
        DataBlock(get_y=str, splitter=lambda items: ([0, 1], [1])).datasets(["a", "b"])


def test_missing_files_from_get_x_are_named(class_folder):
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=lambda f: f[0], get_x=lambda f: class_folder / f,
                      splitter=RandomSplitter(seed=0))
    with pytest.raises(FileNotFoundError, match="nothere.jpg"):
        block.datasets(["circle/circle_0.jpg", "square/nothere.jpg", "square/square_0.jpg"])


def test_datablock_names_are_public():
    for name in ("DataBlock", "ImageBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "parent_label",
                 "RegexLabeller", "using_attr", "ColReader", "RandomSplitter", "GrandparentSplitter", "FuncSplitter",
                 "IndexSplitter", "ColSplitter", "TrainTestSplitter", "get_image_files"):
        assert name in vision_tl.__all__ and getattr(vision_tl, name).__name__ == name  # the object of that name


def test_no_warnings_on_a_clean_datablock(class_folder):
    block = DataBlock(get_items=get_image_files, get_y=parent_label, splitter=RandomSplitter(seed=0),
                      item_tfms=Resize(16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dls = block.dataloaders(class_folder, **FAST)
        list(dls.valid)
