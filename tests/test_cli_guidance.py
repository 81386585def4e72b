"""The newcomer's path through ``vision-tl``: mistakes get a way forward, and the CLI says what it does.

One class folder, a missing folder, an architecture typo (answered without importing torch), other
train/valid folder names, the training plan printed up front, ``info``'s summary, the predict table's
header and ``\\n`` CSVs, and macro averages over the classes that have images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vision_tl.cli import build_parser, main
from vision_tl.cli_data import split_folders
from vision_tl.data.synthetic import make_synthetic_folder

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
VOCAB = ["circle", "square", "stripes"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """An untrained resnet10t at 32 px for ``VOCAB``, exported (no training needed)."""
    from vision_tl.data.batch_tfms import imagenet_stats
    from vision_tl.data.item_tfms import Resize
    from vision_tl.inference.predict import Predictor
    from vision_tl.models.build import ModelConfig, build_model

    cfg = ModelConfig(arch="resnet10t", n_out=len(VOCAB), input_size=(224, 224))  # the arch's default size
    model = build_model(cfg, pretrained=False).eval()
    pred = Predictor(model, VOCAB, [Resize(32)], imagenet_stats, device="cpu", model_config=cfg)
    return pred.export(tmp_path_factory.mktemp("model") / "model.vtl")


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_lr_find_on_one_class_folder_says_one_class_and_shows_label_from(pets_folder, capsys):
    code = main(["lr-find", str(pets_folder / "images"), "--arch", "resnet10t", "--no-pretrained"])
    err = _err(capsys)
    assert code == 1 and "has one class ('images'" in err
    assert "--label-from name-re '^(.+)_\\d+\\.jpg$'" in err


def test_evaluate_on_a_flat_folder_says_one_class_and_shows_label_from(model_file, class_folder, tmp_path, capsys):
    flat = tmp_path / "holdout"
    flat.mkdir()
    for f in sorted(class_folder.rglob("*.jpg"))[:4]:
        shutil.copy(f, flat / f"{f.parent.name}_{f.name}")
    assert main(["evaluate", str(model_file), str(flat)]) == 1
    err = _err(capsys)
    assert "has one class ('holdout'" in err and "--label-from name-re" in err


def test_from_folder_on_a_missing_folder_says_it_does_not_exist(tmp_path):
    from vision_tl.data.factories import ImageDataLoaders

    with pytest.raises(FileNotFoundError, match="no_such_dir' does not exist"):
        ImageDataLoaders.from_folder(tmp_path / "no_such_dir")


def test_arch_typo_suggests_the_name_without_importing_torch(tmp_path):
    code = ("import sys\nfrom vision_tl.cli import main\ntry:\n    main(['train', 'data', '--arch', 'resnt18'])\n"
            "except SystemExit as e:\n    print(e.code)\nprint('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                       timeout=120)
    assert r.stdout.split() == ["2", "False"], r.stdout + r.stderr
    assert "unknown architecture 'resnt18'; did you mean resnet18" in r.stderr


@pytest.mark.parametrize("pair", [("training", "testing"), ("train", "val")])
def test_other_train_valid_folder_names_are_found(pair, tmp_path):
    from vision_tl.cli_data import dataloaders_from_args

    root = make_synthetic_folder(tmp_path, n_per_class=3, splits=pair, seed=4)
    assert split_folders(root) == pair
    args = build_parser().parse_args(["lr-find", str(root), "--size", "32", "--bs", "4", "--num-workers", "0"])
    dls = dataloaders_from_args(args)
    assert (len(dls.train_ds), len(dls.valid_ds), dls.vocab) == (9, 9, VOCAB)


def test_train_and_valid_flags_name_the_split_folders(tmp_path, capsys):
    root = make_synthetic_folder(tmp_path, n_per_class=2, splits=("fit", "check"), seed=5)
    assert split_folders(root, "fit", "check") == ("fit", "check")
    assert split_folders(root) is None  # not a known pair: a random split
    assert main(["lr-find", str(root), "--train", "fit", "--valid", "nope", "--no-pretrained"]) == 1
    assert "--valid 'nope': no folder" in _err(capsys)


def test_info_prints_a_summary_with_one_input_size_and_json_on_request(model_file, capsys):
    assert main(["info", str(model_file)]) == 0
    out = capsys.readouterr().out
    for line in ("architecture:  resnet10t", "classes:       3: circle, square, stripes", "input size:    32x32 px",
                 "normalization: mean (0.485", "size on disk:", "versions:      vision_tl"):
        assert line in out, out
    assert main(["info", str(model_file), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["input_size"] == manifest["model_config"]["input_size"] == [32, 32]


def test_predict_table_has_a_header_and_csv_uses_newlines(model_file, class_folder, tmp_path, capsys):
    out_csv = tmp_path / "p.csv"
    assert main(["predict", str(model_file), str(class_folder / "circle"), "--top-k", "2", "--csv", str(out_csv),
                 "--num-workers", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == ["file", "label", "prob", "label_2", "prob_2"]
    rows = [line.split("\t") for line in lines[1:]]
    assert sorted(Path(r[0]).name for r in rows) == sorted(f.name for f in (class_folder / "circle").iterdir())
    vocab = {"circle", "square", "stripes"}
    for file, label, prob, label_2, prob_2 in rows:
        assert {label, label_2} <= vocab and label != label_2, file
        assert 1 >= float(prob) >= float(prob_2) >= 0, file
    data = out_csv.read_bytes()
    assert b"\r" not in data and data.startswith(b"file,label,prob,label_2,prob_2\n")


def test_evaluate_macro_averages_leave_out_classes_without_images(model_file, class_folder, tmp_path, capsys):
    two = tmp_path / "two"
    for cls in ("circle", "square"):
        shutil.copytree(class_folder / cls, two / cls)
    assert main(["evaluate", str(model_file), str(two), "--json", "--num-workers", "0"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["macro_avg_left_out"] == ["stripes"]


def test_report_macro_average_is_over_classes_with_images():
    from vision_tl.inference.interpret import ClassificationInterpretation

    probs = torch.eye(3)[[0, 0, 1, 2]]  # "c" has no image but is predicted once (for a "b")
    interp = ClassificationInterpretation(["a", "b", "c"], probs, torch.tensor([0, 0, 1, 1]))
    assert interp.macro_avg() == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": (1 + 2 / 3) / 2})
    assert interp.classes_without_images() == ["c"]
    assert "left out: c" in interp.print_classification_report().splitlines()[-1]


@pytest.mark.slow
def test_train_prints_its_plan_before_the_first_batch(class_folder, tmp_path):
    out = tmp_path / "m.vtl"
    r = subprocess.run([sys.executable, "-m", "vision_tl.cli", "train", str(class_folder), "--arch", "resnet10t",
                        "--no-pretrained", "--epochs", "1", "--freeze-epochs", "0", "--size", "32", "--bs", "8",
                        "--num-workers", "0", "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "training resnet10t (randomly initialised (--no-pretrained)) on cpu"
    assert "36 images, 3 classes (circle, square, stripes)" in lines[1]
    assert "29 train / 7 valid (a random 20% of the images, seed 42)" in lines[2]
    assert lines.index(lines[0]) < next(i for i, s in enumerate(lines) if s.startswith("valid loss"))
