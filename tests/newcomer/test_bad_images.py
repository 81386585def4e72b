"""Issue 22, item 1: unreadable validation/test images stop a run at once, all named, or --skip-bad
leaves them out and says how many; ``predict --skip-bad`` writes every row with an error column."""

from __future__ import annotations

import csv

import pytest

from vision_tl import find_bad_images
from vision_tl.cli import main

from .helpers import cut_jpeg


def test_find_bad_images_names_cut_empty_missing_and_non_image_files(tmp_path, class_folder):
    good = sorted(class_folder.rglob("*.jpg"))[:3]
    cut = cut_jpeg(tmp_path / "cut.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    bad = find_bad_images([good[0], cut, good[1], empty, text, tmp_path / "missing.jpg", good[2]], n_threads=3)
    assert [e.path for e in bad] == [cut, empty, text, tmp_path / "missing.jpg"]
    assert "truncated" in bad[0].reason.lower() and "empty" in bad[1].reason and "no such file" in bad[3].reason


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_stops_before_the_first_batch_naming_every_bad_validation_file(bad_tv_folder, tmp_path, capsys):
    code, out, err = _cli(capsys, "train", bad_tv_folder, "--arch", "resnet10t", "--no-pretrained", "--size", "32",
                          "--num-workers", "0", "--out", tmp_path / "m.vtl")
    assert code == 1 and out == ""  # nothing trained, no plan printed
    assert len(err.strip().splitlines()) == 1 and "cut.jpg" in err and "notes.jpg" in err
    assert "2 validation image(s)" in err and "--skip-bad" in err
    assert not (tmp_path / "m.vtl").exists()


@pytest.mark.slow
def test_lr_find_skip_bad_leaves_them_out_and_says_how_many(bad_tv_folder, tmp_path, capsys):
    code, out, err = _cli(capsys, "lr-find", bad_tv_folder, "--arch", "resnet10t", "--no-pretrained", "--size", "32",
                          "--num-workers", "0", "--num-it", "6", "--skip-bad", "--plot", tmp_path / "lr.png")
    assert code == 0, err
    assert "warning: --skip-bad: left out 2 validation image(s)" in err
    assert "warning: --skip-bad: left out 1 training image(s)" in err
    assert "valley" in out and (tmp_path / "lr.png").is_file()


def test_predict_skip_bad_writes_every_row_with_an_error_column(tiny_model, tmp_path, capsys):
    model, dls = tiny_model
    files = [str(f) for f in dls.valid_ds.items[:3]]
    cut = str(cut_jpeg(tmp_path / "cut.jpg"))
    order = [files[0], cut, files[1], files[2]]
    code, _, err = _cli(capsys, "predict", model, *order)
    assert code == 1 and "cut.jpg" in err and len(err.strip().splitlines()) == 1

    out_csv = tmp_path / "p.csv"
    code, out, err = _cli(capsys, "predict", model, *order, "--skip-bad", "--csv", out_csv)
    assert code == 0, err
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["file"] for r in rows] == order and list(rows[0]) == ["file", "label", "prob", "error"]
    assert rows[1]["label"] == "" and "truncated" in rows[1]["error"].lower()
    assert all(r["label"] in dls.vocab and r["error"] == "" for r in rows[:1] + rows[2:])
    assert out.splitlines()[0].split("\t") == ["file", "label", "prob", "error"] and len(out.splitlines()) == 5
    assert "1 image(s) could not be read" in err and f"wrote 4 predictions to {out_csv}" in err


def test_evaluate_stops_on_a_bad_file_and_skip_bad_leaves_it_out(tiny_model, train_valid_folder, tmp_path, capsys):
    import shutil

    model, _ = tiny_model
    data = tmp_path / "holdout"
    shutil.copytree(train_valid_folder / "valid", data)
    cut_jpeg(data / sorted(p.name for p in data.iterdir())[0] / "cut.jpg")
    code, _, err = _cli(capsys, "evaluate", model, data)
    assert code == 1 and "cut.jpg" in err and "--skip-bad" in err
    code, out, err = _cli(capsys, "evaluate", model, data, "--skip-bad", "--json")
    assert code == 0, err
    import json

    assert json.loads(out)["n_images"] == 24 and "left out of the metrics" in err
