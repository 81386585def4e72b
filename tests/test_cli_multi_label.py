"""vision-tl with a multi-label CSV: train --multi-label, predict label sets, evaluate per class."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vision_tl.cli import main
from vision_tl.data.synthetic import make_synthetic_multi_label
from vision_tl.inference.vtl import read_manifest

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vision_tl.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def test_multi_label_needs_csv_labels(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "data", "--multi-label"])
    assert info.value.code == 2 and "--multi-label needs --label-from csv FILE" in capsys.readouterr().err


@pytest.mark.slow
def test_train_predict_evaluate_a_multi_label_csv(tmp_path, capsys):
    data = make_synthetic_multi_label(tmp_path / "data", n_images=32, size=32, seed=1)
    rows = list(csv.DictReader(open(data / "labels.csv")))
    model = tmp_path / "ml.vtl"
    r = run_cli("train", data, "--label-from", "csv", "labels.csv", "--multi-label", "--label-delim", " ",
                "--arch", "test_resnet", "--no-pretrained", "--epochs", "1", "--freeze-epochs", "0", "--size", "32",
                "--bs", "8", "--num-workers", "0", "--out", model)
    assert r.returncode == 0, r.stderr
    assert "accuracy_multi" in r.stdout and model.is_file()

    info = read_manifest(model)
    assert info["multi_label"] is True and info["threshold"] == 0.5
    vocab = info["vocab"]

    def cli(*args: object) -> tuple[int, str, str]:  # in this process: a fresh interpreter per call is slow here
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    assert vocab == sorted({lab for row in rows for lab in row["labels"].split(" ")})

    out_csv = tmp_path / "preds.csv"
    code, out, err = cli("predict", model, data / "images", "--json", "--csv", out_csv, "--device", "cpu")
    assert code == 0, err
    preds = json.loads(out)
    assert len(preds) == 32
    for p in preds:  # labels are the classes whose probability is above the threshold
        assert list(p["probs"]) == vocab and p["labels"] == [c for c in vocab if p["probs"][c] > 0.5]
    table = list(csv.DictReader(open(out_csv)))
    assert list(table[0]) == ["file", "labels", *vocab] and [t["file"] for t in table] == [p["file"] for p in preds]
    code, out, _ = cli("predict", model, data / "images" / "img_000.jpg")  # the table: file, labels, probabilities
    assert code == 0 and all(c in out for c in vocab)

    png = tmp_path / "cm.png"
    code, out, err = cli("evaluate", model, data, "--label-from", "csv", "labels.csv", "--json", "--confusion-matrix", png)
    assert code == 0, err
    res = json.loads(out)
    assert res["n_images"] == 32 and png.stat().st_size > 0
    assert [c["class"] for c in res["per_class"]] == vocab
    assert all({"precision", "recall", "f1", "support"} <= set(c) for c in res["per_class"])
    support = {c: sum(c in row["labels"].split(" ") for row in rows) for c in vocab}
    assert {c["class"]: c["support"] for c in res["per_class"]} == support
    cm = res["confusion_matrix"]
    assert len(cm) == len(vocab) and all(sum(map(sum, m)) == 32 for m in cm)
    assert {"micro_avg", "macro_avg", "samples_avg", "accuracy_multi"} <= set(res)
    code, _, err = cli("evaluate", model, data)  # folder labels cannot describe label sets
    assert code == 1 and "--label-from csv" in err
    assert Path(model).is_file()
