"""Issue 22, item 4: the CLI's CSV split follows ``--valid-col`` or the CSV's ``is_valid`` column (as the
Python API does), and ``evaluate`` warns when it scores files the model was trained on."""

from __future__ import annotations

import argparse
import csv

import pytest

from vision_tl import read_manifest
from vision_tl.cli import build_parser
from vision_tl.cli_data import CLIError, dataloaders_from_args
from vision_tl.data.synthetic import make_synthetic_multi_label
from vision_tl.inference.train_items import trained_on


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", *argv, "--size", "16", "--num-workers", "0"])


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    return make_synthetic_multi_label(tmp_path_factory.mktemp("ml") / "data", n_images=24, size=32, seed=1)


def test_the_csv_is_valid_column_chooses_the_validation_rows(multi):
    rows = list(csv.DictReader(open(multi / "labels.csv")))
    valid = sorted(multi / r["fname"] for r in rows if r["is_valid"] == "True")
    args = _args(str(multi), "--label-from", "csv", "labels.csv", "--multi-label")
    dls = dataloaders_from_args(args)
    assert sorted(dls.valid_ds.items) == valid and len(dls.train_ds) == len(rows) - len(valid)
    assert "is_valid" in args.split_how


def test_valid_col_names_another_column_and_a_wrong_name_is_an_error(multi, tmp_path):
    rows = list(csv.DictReader(open(multi / "labels.csv")))
    with open(multi / "mine.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fname", "labels", "holdout"])
        w.writerows([r["fname"], r["labels"], i < 4] for i, r in enumerate(rows))
    dls = dataloaders_from_args(_args(str(multi), "--label-from", "csv", "mine.csv", "--multi-label",
                                      "--valid-col", "holdout"))
    assert sorted(dls.valid_ds.items) == sorted(multi / r["fname"] for r in rows[:4])
    with pytest.raises(CLIError, match="--valid-col 'nope': no such column"):
        dataloaders_from_args(_args(str(multi), "--label-from", "csv", "mine.csv", "--valid-col", "nope"))


def test_the_export_lists_its_training_files_and_evaluate_knows_them(tiny_model, class_folder, tmp_path):
    model, dls = tiny_model
    entry = read_manifest(model)["train_items"]
    assert entry["n"] == len(dls.train_ds) == 27 and all(len(h) == 10 for h in entry["hashes"])
    assert not any(str(class_folder) in h or "circle" in h for h in entry["hashes"])  # hashes, not names
    everything = sorted(class_folder.rglob("*.jpg"))
    assert sorted(trained_on(read_manifest(model), everything)) == sorted(dls.train_ds.items)
    assert trained_on(read_manifest(model), dls.valid_ds.items) == []
