"""The vision-tl command: fast help without torch, exit codes 0/1/2, and train -> predict -> evaluate end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vision_tl.cli import main
from vision_tl.cli_data import expand_images

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``vision-tl ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "vision_tl.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=timeout)


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys\nfrom vision_tl.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    for cmd in ("train", "predict", "evaluate", "lr-find", "export-onnx", "demo"):
        assert cmd in out
    assert out.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required: COMMAND"),
        (["predict", "m.vtl"], "required: images"),
        (["predict", "m.vtl", "a.jpg", "--top-k", "0"], "--top-k must be >= 1, got 0"),
        (["train", "data", "--label-from", "name-re"], "--label-from name-re takes 1 argument"),
        (["train", "data", "--label-from", "parent"], "got 'parent'"),
        (["train", "data", "--valid-pct", "1.5"], "--valid-pct must be in [0, 1), got 1.5"),
        (["train", "--epochs", "2"], "required: DATA"),
        (["predict", "m.vtl", "a.jpg", "--device", "banana"], "--device must be cpu, cuda, cuda:N or mps"),
    ],
)
def test_usage_errors_exit_2_and_say_why(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_subcommand_usage_error_shows_that_subcommand_usage(capsys):
    with pytest.raises(SystemExit):
        main(["train", "data", "--bs", "0"])
    assert capsys.readouterr().err.startswith("usage: vision-tl train")


def test_debug_may_follow_the_subcommand(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.vtl"):  # the traceback, not the one-line error
        main(["info", str(tmp_path / "missing.vtl"), "--debug"])


def test_missing_model_file_exits_1_with_one_line(tmp_path, capsys):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    assert main(["predict", str(tmp_path / "missing.vtl"), str(img)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.vtl" in err


def test_missing_image_exits_1_naming_it(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "m.vtl"), str(tmp_path / "nope.jpg")]) == 1
    assert "nope.jpg" in capsys.readouterr().err


def test_corrupt_model_file_exits_1_naming_it(tmp_path, capsys):
    bad, img = tmp_path / "corrupt.vtl", tmp_path / "a.jpg"
    bad.write_bytes(b"\x00" * 20)
    img.write_bytes(b"x")
    assert main(["predict", str(bad), str(img)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "corrupt.vtl" in err


def test_expand_images_takes_files_folders_and_globs(class_folder):
    one = next(class_folder.rglob("*.jpg"))
    files = expand_images([str(one), str(class_folder / "circle"), str(class_folder / "*" / "square_1*.jpg")])
    assert files[0] == one
    circles = sorted((class_folder / "circle").glob("*.jpg"))
    squares = [class_folder / "square" / f"square_{i}.jpg" for i in (1, 10, 11)]
    assert sorted(files[1:]) == sorted(circles + squares) and len(circles) == 12


@pytest.mark.slow
def test_train_predict_evaluate_end_to_end(class_folder, tmp_path):
    from vision_tl import load_learner

    model = tmp_path / "model.vtl"
    r = run_cli("train", class_folder, "--arch", "resnet10t", "--no-pretrained", "--epochs", "1", "--size", "32",
                "--bs", "8", "--num-workers", "0", "--out", model)
    assert r.returncode == 0, r.stderr
    assert model.is_file() and "saved" in r.stdout

    # a second train to the same --out is refused up front (exit 1), the file untouched
    before = model.stat().st_mtime_ns
    r = run_cli("train", class_folder, "--arch", "resnet10t", "--no-pretrained", "--out", model)
    assert r.returncode == 1 and "--overwrite" in r.stderr and model.stat().st_mtime_ns == before

    out_csv = tmp_path / "preds.csv"
    r = run_cli("predict", model, class_folder / "circle", "--top-k", "2", "--json", "--csv", out_csv)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 12 and all(len(row["top_k"]) == 2 for row in rows)
    # the same answers as the Python API gives for the same files (an independent run of the model)
    predictor = load_learner(model, device="cpu")
    circles = [Path(row["file"]) for row in rows]
    assert sorted(circles) == sorted((class_folder / "circle").glob("*.jpg"))
    probs = predictor.predict_batch(circles, num_workers=0, progress=False)
    top = probs.topk(2, dim=1)
    assert [[t["label"] for t in row["top_k"]] for row in rows] == [[predictor.vocab[j] for j in i] for i in top.indices]
    assert [t["prob"] for row in rows for t in row["top_k"]] == pytest.approx(top.values.flatten().tolist(), abs=1e-5)
    assert [row["label"] for row in rows] == predictor.decode(probs)
    with open(out_csv) as f:
        table = list(csv.DictReader(f))
    assert [t["file"] for t in table] == [row["file"] for row in rows]
    assert [t["label"] for t in table] == [row["label"] for row in rows]

    png = tmp_path / "cm.png"
    r = run_cli("evaluate", model, class_folder, "--confusion-matrix", png, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    # accuracy and confusion matrix as sklearn computes them from the model's own predictions
    from sklearn.metrics import accuracy_score, confusion_matrix

    files = sorted(class_folder.rglob("*.jpg"))
    truth = [f.parent.name for f in files]
    guesses = predictor.decode(predictor.predict_batch(files, num_workers=0, progress=False))
    assert res["n_images"] == 36 and res["vocab"] == predictor.vocab
    assert res["accuracy"] == pytest.approx(accuracy_score(truth, guesses))
    assert res["error_rate"] == pytest.approx(1 - accuracy_score(truth, guesses))
    assert res["confusion_matrix"] == confusion_matrix(truth, guesses, labels=predictor.vocab).tolist()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    if all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")):
        r = run_cli("export-onnx", model, tmp_path / "model.onnx")  # from a loaded (channels-last) model
        assert r.returncode == 0, r.stderr
        assert "max abs difference" in r.stdout and (tmp_path / "model.onnx").is_file()

    bad = tmp_path / "unreadable.jpg"
    bad.write_bytes(b"not an image")
    r = run_cli("predict", model, bad)
    assert r.returncode == 1 and "unreadable.jpg" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_with_name_regex_labels_and_lr_find(pets_folder, tmp_path):
    images = pets_folder / "images"
    pat = r"^(.+)_\d+\.jpg$"
    plot = tmp_path / "lr.png"
    r = run_cli("lr-find", "--label-from", "name-re", pat, images, "--arch", "resnet10t", "--no-pretrained",
                "--size", "32", "--bs", "8", "--num-workers", "0", "--num-it", "12", "--plot", plot)
    assert r.returncode == 0, r.stderr
    assert "valley" in r.stdout and plot.stat().st_size > 0


@pytest.mark.slow
def test_demo_command_runs_the_offline_demo(tmp_path):
    out = tmp_path / "demo"
    # the settings of test_demo.py's TINY run (24 images, 4 for validation, are too few to learn from)
    r = run_cli("demo", "--out", out, "--n-images", "40", "--size", "32", "--arch", "resnet10t", "--bs", "8",
                "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout[r.stdout.index("{\n"):])
    assert result["error_rate"] < 0.2  # it learns (all 8 right on a CPU); guessing gets about half wrong
    assert f"error_rate: {result['error_rate']:.4f}" in r.stdout
    assert any(Path(f).suffix == ".vtl" for f in result["files"]) and all(Path(f).is_file() for f in result["files"])


def test_csv_labels_are_read_like_from_csv_and_an_empty_label_is_an_error(tmp_path):
    import pandas as pd

    from vision_tl.cli_data import labelled_files
    from vision_tl.data.sources import df_files_labels

    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text(f"fname,label\na.jpg,cat\n{tmp_path / 'b.jpg'},dog\n")
    files, labels = labelled_files(tmp_path, ["csv", "labels.csv"])
    assert (files, labels) == df_files_labels(pd.read_csv(tmp_path / "labels.csv"), tmp_path)
    assert files == [tmp_path / "a.jpg", tmp_path / "b.jpg"] and labels == ["cat", "dog"]
    (tmp_path / "labels.csv").write_text("fname,label\na.jpg,cat\nc.jpg,\n")
    with pytest.raises(ValueError, match="c.jpg"):
        labelled_files(tmp_path, ["csv", "labels.csv"])
