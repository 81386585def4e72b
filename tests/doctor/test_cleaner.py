"""``ImageClassifierCleaner`` through its ipywidgets objects (no browser): fastai's interface, and the
choices survive switching class and split (fastai's loses them, fastai issue 3084)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets", reason="pip install 'vision_tl[doctor]'")

from vision_tl import ImageClassifierCleaner, ImageDataLoaders, Resize, vision_learner  # noqa: E402

from .helpers import make_digits_set  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cleaner(tmp_path_factory):
    planted = make_digits_set(tmp_path_factory.mktemp("cleaner") / "digits", n=60, n_flip=3)
    for f in planted.unreadable:  # the cleaner reviews a set a model can read
        Path(f).unlink()
    dls = ImageDataLoaders.from_folder(planted.root, item_tfms=Resize(32), bs=16, num_workers=0, device="cpu", seed=0)
    learn = vision_learner(dls, "resnet10t", pretrained=False)
    return ImageClassifierCleaner(learn, max_n=8)


def test_fastai_interface_highest_loss_first(cleaner):
    assert list(cleaner.dd_ds.options) == ["Train", "Valid"] and list(cleaner.dd_cats.options) == cleaner.vocab
    rows = [r for r in cleaner._by_split[0] if r[1] == cleaner.vocab.index(cleaner.dd_cats.value)]
    losses = [loss for _, _, loss in sorted(rows, key=lambda r: -r[2])][: len(cleaner.fns)]
    assert [dict((p, loss) for p, _, loss in rows)[f] for f in cleaner.fns] == losses
    assert len(cleaner.fns) == len(cleaner.dropdowns) == len(cleaner.grid.children) <= 8
    assert cleaner.dropdowns[0].options[:2] == ("<Keep>", "<Delete>")
    assert cleaner.grid.children[0].children[0].value[:4] == b"\x89PNG"  # the picture itself, inline


def test_choices_survive_switching_class_and_split(cleaner, tmp_path):
    first, second = cleaner.vocab[0], cleaner.vocab[1]
    cleaner.dd_ds.value, cleaner.dd_cats.value = "Train", first
    cleaner.dropdowns[0].value = "<Delete>"
    cleaner.dropdowns[1].value = second
    deleted, moved = cleaner.fns[0], cleaner.fns[1]
    assert cleaner.delete() == [0] and cleaner.change() == [(1, second)]
    cleaner.dd_cats.value = second  # another class...
    assert cleaner.delete() == [] and moved not in cleaner.fns
    cleaner.dropdowns[0].value = "<Delete>"
    other = cleaner.fns[0]
    cleaner.dd_ds.value = "Valid"  # ...and the other split
    cleaner.dd_ds.value, cleaner.dd_cats.value = "Train", first  # back
    assert cleaner.fns[:2] == [deleted, moved]
    assert cleaner.dropdowns[0].value == "<Delete>" and cleaner.dropdowns[1].value == second
    assert cleaner.delete() == [0] and cleaner.change() == [(1, second)]
    cleaner.to_decisions(tmp_path / "d.csv")
    rows = {r["path"]: r["action"] for r in csv.DictReader(open(tmp_path / "d.csv", newline=""))}
    assert rows == {deleted: "delete", moved: second, other: "delete"}
