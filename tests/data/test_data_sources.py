"""get_image_files, labelling and splitting: deterministic, and errors that name the file or argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision_tl.data.sources import (
    GrandparentSplitter,
    IndexSplitter,
    LabelError,
    RandomSplitter,
    RegexLabeller,
    get_image_files,
    label_items,
    make_vocab,
    parent_label,
)


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_get_image_files_sorted_by_extension_case_insensitive_and_skips_hidden(tmp_path):
    for rel in ["b/2.JPG", "a/1.png", "a/sub/3.jpeg", "a/notes.txt", "a/.hidden.jpg", "a/._resource.jpg",
                ".cache/x.jpg", "c.webp"]:
        _touch(tmp_path / rel)
    files = get_image_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/1.png", "a/sub/3.jpeg", "b/2.JPG", "c.webp"]
    assert [f.name for f in get_image_files(tmp_path, recurse=False)] == ["c.webp"]
    assert [f.name for f in get_image_files(tmp_path, folders=["b"])] == ["2.JPG"]


def test_get_image_files_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        get_image_files(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="valid"):
        get_image_files(tmp_path, folders=["valid"])
    f = _touch(tmp_path / "x.jpg")
    with pytest.raises(NotADirectoryError, match="x.jpg"):
        get_image_files(f)
    assert get_image_files(_touch(tmp_path / "empty" / "n.txt").parent) == []


def test_random_splitter_is_the_same_everywhere_for_a_seed():
    # pinned: the split of a seeded run must not change across machines or versions
    assert RandomSplitter(0.2, seed=42)(list(range(10))) == ([0, 1, 2, 3, 4, 7, 8, 9], [5, 6])
    items = list(range(100))
    tr, va = RandomSplitter(0.25, seed=7)(items)
    assert len(va) == 25 and sorted(tr + va) == items
    assert RandomSplitter(0.25, seed=8)(items) != (tr, va)


def test_random_splitter_without_seed_still_splits():
    tr, va = RandomSplitter(0.5)(list(range(10)))
    assert len(va) == 5 and not set(tr) & set(va)


def test_random_splitter_keeps_one_item_on_each_side_of_tiny_sets():
    assert [len(s) for s in RandomSplitter(0.2, seed=0)(["a", "b", "c"])] == [2, 1]
    assert RandomSplitter(0.0, seed=0)(list(range(4))) == ([0, 1, 2, 3], [])


@pytest.mark.parametrize("pct", [1.0, 1.5, -0.1, "0.2", None, True])
def test_valid_pct_out_of_range_echoes_the_value(pct):
    with pytest.raises(ValueError, match=r"valid_pct must be .* got " + repr(pct).replace("(", r"\(")):
        RandomSplitter(pct)  # type: ignore[arg-type]


def test_grandparent_and_index_splitters():
    items = [Path("d/train/a/1.jpg"), Path("d/valid/a/2.jpg"), Path("d/train/b/3.jpg"), Path("d/test/b/4.jpg")]
    assert GrandparentSplitter()(items) == ([0, 2], [1])
    assert IndexSplitter([1, 3])(items) == ([0, 2], [1, 3])
    assert IndexSplitter([False, True, False, True])(items) == ([0, 2], [1, 3])
    with pytest.raises(ValueError, match="out of range"):
        IndexSplitter([9])(items)


def test_label_items_names_the_file_when_the_label_function_fails():
    items = [Path("x/cat_1.jpg"), Path("x/dog_2.jpg")]
    assert label_items(items, parent_label) == ["x", "x"]
    assert label_items(items, lambda p: p.name.startswith("cat")) == ["True", "False"]

    def picky(p):
        if "dog" in p.name:
            raise KeyError("no breed")
        return "cat"

    with pytest.raises(LabelError, match=r"dog_2\.jpg.*picky.*KeyError.*no breed"):
        label_items(items, picky)
    with pytest.raises(LabelError, match=r"cat_1\.jpg.*returned None"):
        label_items(items, lambda p: None)


def test_regex_labeller():
    lab = RegexLabeller(r"^(.+)_\d+\.jpg$")
    assert lab(Path("/data/great_pyrenees_12.jpg")) == "great_pyrenees"
    with pytest.raises(ValueError, match="does not match 'odd.png'"):
        lab("odd.png")
    assert RegexLabeller(r"/(\w+)/[^/]+$", use_path=True)("root/cats/1.jpg") == "cats"
    with pytest.raises(ValueError, match="needs a group"):
        RegexLabeller(r"\d+")
    with pytest.raises(ValueError, match="invalid regular expression"):
        RegexLabeller(r"(")


def test_vocab_is_sorted_and_a_given_vocab_must_cover_the_labels():
    assert make_vocab(["dog", "cat", "dog"]) == ["cat", "dog"]
    assert make_vocab(["dog", "cat"], vocab=["dog", "cat", "bird"]) == ["dog", "cat", "bird"]
    with pytest.raises(ValueError, match="'cow'"):
        make_vocab(["cow", "cat"], vocab=["cat", "dog"])


def test_get_image_files_survives_a_symlink_loop(tmp_path):
    _touch(tmp_path / "a" / "1.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    assert [f.name for f in get_image_files(tmp_path)] == ["1.jpg"]
