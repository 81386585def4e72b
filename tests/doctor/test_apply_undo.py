"""``--apply decisions.csv`` moves, never removes; ``--undo JOURNAL`` leaves the folder byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision_tl.cli import main
from vision_tl.doctor.apply import apply_decisions, undo_decisions

from .helpers import folder_hashes


def _img(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "data"
    for k, (split, cls) in enumerate([("train", "cat"), ("train", "cat"), ("train", "dog"), ("valid", "dog"),
                                      ("valid", "dog"), ("train", "dog")]):  # no valid/cat/ folder yet
        _img(root / split / cls / f"{k}.png", k)
    return root


def _decisions(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("path,action,why\n" + "".join(f"{p},{a},test\n" for p, a in rows))
    return path


def test_apply_then_undo_is_byte_identical(folder, tmp_path, capsys):
    before, tree = folder_hashes(folder), set(folder.rglob("*"))
    dec = _decisions(tmp_path / "d.csv", [(str(folder / "train/cat/0.png"), "delete"),
                                          (str(folder / "train/cat/1.png"), "dog"),
                                          (str(folder / "valid/dog/3.png"), "bird"),  # a new class folder
                                          (str(folder / "train/dog/2.png"), "keep")])
    assert main(["doctor", str(folder), "--apply", str(dec)]) == 1  # bird is not a class: nothing moved
    assert "not keep, delete or a class" in capsys.readouterr().err and folder_hashes(folder) == before
    _decisions(dec, [(str(folder / "train/cat/0.png"), "delete"), (str(folder / "train/cat/1.png"), "dog"),
                     ("train/dog/2.png", "keep"), ("valid/dog/3.png", "cat")])  # paths relative to DATA work too
    assert main(["doctor", str(folder), "--apply", str(dec)]) == 0
    out = capsys.readouterr().out
    journal = Path(out.split("journal: ")[1].split()[0])
    after = folder_hashes(folder)
    assert "train/cat/0.png" not in after and after["train/dog/1.png"] == before["train/cat/1.png"]
    assert after["valid/cat/3.png"] == before["valid/dog/3.png"]
    quarantined = journal.parent / "files/train/cat/0.png"
    assert quarantined.read_bytes() and not folder.joinpath("train/cat/0.png").exists()
    assert main(["doctor", "--undo", str(journal)]) == 0
    assert folder_hashes(folder) == before
    assert set(folder.rglob("*")) == tree  # valid/cat/, made for the relabel, is gone again
    assert json.loads(journal.read_text())["undone"]
    assert main(["doctor", "--undo", str(journal)]) == 1  # twice: refused


def test_refuses_paths_outside_the_data_and_overwrites(folder, tmp_path):
    outside = tmp_path / "elsewhere.png"
    _img(outside, 99)
    before = folder_hashes(folder)
    with pytest.raises(ValueError, match="outside the data folder"):
        apply_decisions(_decisions(tmp_path / "d.csv", [(str(outside), "delete")]), folder)
    with pytest.raises(ValueError, match="outside the data folder"):
        apply_decisions(_decisions(tmp_path / "d.csv", [(str(folder / "train/../../elsewhere.png"), "delete")]), folder)
    _img(folder / "train/dog/0.png", 7)  # a dog with the same name as the cat to relabel
    before = folder_hashes(folder)
    with pytest.raises(FileExistsError, match="not overwriting"):
        apply_decisions(_decisions(tmp_path / "d.csv", [(str(folder / "train/cat/0.png"), "dog")]), folder)
    assert folder_hashes(folder) == before and not (tmp_path / "data.quarantine").exists()


def test_csv_labels_are_rewritten_atomically_and_restored(tmp_path):
    root = tmp_path / "data"
    for k in range(4):
        _img(root / "images" / f"{k}.png", k)
    csv = root / "labels.csv"
    csv.write_bytes(b"fname,label\r\nimages/0.png,cat\r\nimages/1.png,dog\r\nimages/2.png,cat\r\nimages/3.png,dog\r\n")
    before = folder_hashes(root)
    dec = _decisions(tmp_path / "d.csv", [("images/0.png", "dog"), ("images/3.png", "delete")])
    journal = apply_decisions(dec, root, label_csv="labels.csv", classes=["cat", "dog"])
    assert csv.read_text().splitlines() == ["fname,label", "images/0.png,dog", "images/1.png,dog", "images/2.png,cat"]
    assert not (root / "images/3.png").exists()
    undo_decisions(journal)
    assert folder_hashes(root) == before
