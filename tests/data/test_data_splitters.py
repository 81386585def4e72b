"""Splitters and getters as fastai documents them: seeded splits are the same every run; getters read rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from vision_tl.data.sources import ColReader, RegexLabeller, parent_label, using_attr
from vision_tl.data.splitters import (
    ColSplitter,
    EndSplitter,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    MaskSplitter,
    RandomSplitter,
    TrainTestSplitter,
)

ITEMS = [Path(f"root/{'train' if i % 4 else 'valid'}/{'cat' if i % 3 else 'dog'}/{i}.jpg") for i in range(40)]


def _check_partition(train, valid, n):
    assert sorted(train) == train and sorted(valid) == valid
    assert not set(train) & set(valid) and set(train) | set(valid) <= set(range(n))


def test_random_splitter_is_the_same_every_run_with_a_seed():
    a, b = RandomSplitter(0.25, seed=7)(ITEMS), RandomSplitter(0.25, seed=7)(ITEMS)
    assert a == b and len(a[1]) == 10
    _check_partition(*a, 40)
    assert RandomSplitter(0.25, seed=8)(ITEMS) != a


def test_train_test_splitter_is_seeded_sized_like_scikit_learn_and_stratifies():
    labels = ["a"] * 30 + ["b"] * 10
    split = TrainTestSplitter(test_size=0.25, random_state=42)
    train, valid = split(ITEMS)
    assert (train, valid) == split(ITEMS) and len(valid) == 10 and len(train) == 30
    _check_partition(train, valid, 40)
    assert TrainTestSplitter(test_size=0.25, random_state=1)(ITEMS) != (train, valid)
    assert TrainTestSplitter(test_size=0.33)(ITEMS)[1].__len__() == 14  # ceil, as scikit-learn
    assert TrainTestSplitter(test_size=5, train_size=20, shuffle=False)(ITEMS) == (list(range(20)), list(range(20, 25)))
    strat = TrainTestSplitter(test_size=0.2, random_state=3, stratify=labels)
    train, valid = strat(ITEMS)
    assert (train, valid) == strat(ITEMS)
    assert Counter(labels[i] for i in valid) == {"a": 6, "b": 2}
    assert Counter(labels[i] for i in train) == {"a": 24, "b": 8}
    with pytest.raises(ValueError, match="stratify has 3 labels for 40 items"):
        TrainTestSplitter(stratify=["a", "b", "a"])(ITEMS)
    with pytest.raises(ValueError, match="test_size as a fraction must be in"):
        TrainTestSplitter(test_size=1.5)(ITEMS)


def test_index_mask_end_and_grandparent_splitters():
    assert IndexSplitter([1, 3])(ITEMS[:5]) == ([0, 2, 4], [1, 3])
    assert MaskSplitter([False, True, False, True, False])(ITEMS[:5]) == ([0, 2, 4], [1, 3])
    assert EndSplitter(0.2)(ITEMS[:10]) == (list(range(8)), [8, 9])
    assert EndSplitter(0.2, valid_last=False)(ITEMS[:10]) == (list(range(2, 10)), [0, 1])
    train, valid = GrandparentSplitter()(ITEMS)
    assert valid == [i for i in range(40) if i % 4 == 0] and len(train) == 30
    assert GrandparentSplitter(train_name=["train", "valid"], valid_name="none")(ITEMS) == (list(range(40)), [])


def test_func_splitter_on_paths_and_on_dataframe_rows():
    assert FuncSplitter(lambda p: p.parent.name == "dog")(ITEMS)[1] == [i for i in range(40) if i % 3 == 0]
    df = pd.DataFrame({"fname": ["a.jpg", "b.jpg", "c.jpg"], "fold": [0, 1, 0]})
    assert FuncSplitter(lambda r: r["fold"] == 1)(df) == ([0, 2], [1])
    with pytest.raises(ValueError, match="FuncSplitter.*KeyError.*'fname': 'a.jpg'"):
        FuncSplitter(lambda r: r["missing"])(df)


def test_col_splitter_by_name_position_and_value():
    df = pd.DataFrame({"fname": list("abcd"), "is_valid": [True, False, False, True], "set": ["tr", "va", "tr", "va"]})
    assert ColSplitter()(df) == ([1, 2], [0, 3])
    assert ColSplitter(1)(df) == ([1, 2], [0, 3])
    assert ColSplitter("set", on="va")(df) == ([0, 2], [1, 3])
    with pytest.raises(ValueError, match=r"col='valid' is not a column.*\['fname', 'is_valid', 'set'\]"):
        ColSplitter("valid")(df)
    with pytest.raises(TypeError, match="needs the items to be a pandas DataFrame"):
        ColSplitter()(ITEMS)


def test_col_reader_prefix_suffix_label_delim_and_several_columns(tmp_path):
    row = pd.DataFrame({"fname": ["000005"], "labels": ["chair person"], "n": [3]}).iloc[0]
    assert ColReader("fname", pref="imgs/", suff=".jpg")(row) == "imgs/000005.jpg"
    assert ColReader("fname", pref=tmp_path / "train")(row) == str(tmp_path / "train" / "000005")
    assert ColReader("labels", label_delim=" ")(row) == ["chair", "person"]
    assert ColReader(1, label_delim=" ")(row) == ["chair", "person"]  # by position
    assert ColReader(["fname", "n"])(row) == ["000005", 3]
    assert ColReader("labels", label_delim=" ")(pd.Series({"labels": float("nan")})) == []
    with pytest.raises(KeyError, match="no column 'label'"):
        ColReader("label")(row)


def test_using_attr_parent_label_and_regex_labeller_on_name_or_full_path():
    p = Path("/data/oxford-iiit-pet/images/great_pyrenees_12.jpg")
    assert using_attr(RegexLabeller(r"(.+)_\d+.jpg$"), "name")(p) == "great_pyrenees"  # the book's pets
    assert RegexLabeller(r"/([^/]+)_\d+.jpg$")(p) == "great_pyrenees"  # fastai's docs: a full-path pattern
    assert RegexLabeller(r"^(.+)_\d+\.jpg$")(p) == "great_pyrenees"  # a name pattern
    assert RegexLabeller(r"images/(\w+?)_", match=False, use_path=True)(p) == "great"
    with pytest.raises(ValueError, match="does not match"):
        RegexLabeller(r"(\d+)", match=True)(p)
    assert parent_label(Path("train/3/7463.png")) == "3"
