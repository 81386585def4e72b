"""int8 end to end: ``learn.export(..., int8=True)``, ``vision-tl quantize``, ``load_learner(precision="int8")``,
``--precision int8``, ``vision-tl info``; refusals leave files as they were."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from vision_tl.cli import main
from vision_tl.inference.load import load_learner
from vision_tl.inference.quantize import INT8_ENTRY, INT8_PAYLOAD, Int8Refused
from vision_tl.inference.runners import OrtInt8Runner
from vision_tl.inference.vtl import read_manifest, read_payload

from .helpers import SIZE, train_head

pytestmark = pytest.mark.slow  # ONNX exports and calibrations (seconds each)

MAX_DROP = 10  # the test model's random body is fragile under int8 (test_quantize.py says how much)


@pytest.fixture(scope="module")
def learn(digits_folder, digit_arrays):
    """A resnet10t learner on the 200 held-out digits (half valid), whose head was trained on 1200 others."""
    from vision_tl import ImageDataLoaders, Resize, vision_learner

    dls = ImageDataLoaders.from_folder(digits_folder, valid_pct=0.5, seed=0, item_tfms=Resize(SIZE), bs=32,
                                       num_workers=0)
    torch.manual_seed(0)
    learn = vision_learner(dls, "resnet10t", pretrained=False)
    train_head(learn.model, learn.preprocess, *(a[:1200] for a in digit_arrays))
    return learn


@pytest.fixture(scope="module")
def int8_file(learn, tmp_path_factory):
    return learn.export(tmp_path_factory.mktemp("int8") / "m.vtl", int8=True, max_drop=MAX_DROP)


@pytest.fixture(scope="module")
def fp32_file(learn, tmp_path_factory):
    return learn.export(tmp_path_factory.mktemp("fp32") / "m.vtl")


def test_export_int8_stores_the_graph_and_its_measured_drop(int8_file, learn):
    m = read_manifest(int8_file)
    entry = m[INT8_ENTRY]
    assert entry["n_calib"] + entry["n_check"] == len(learn.dls.valid_ds) == 100  # every valid image, each once
    assert entry["drop"] == pytest.approx(entry["fp32_accuracy"] - entry["int8_accuracy"]) and entry["drop"] <= MAX_DROP
    assert entry["max_drop"] == MAX_DROP and "validation images" in entry["calibrated_on"]
    graph = onnx.load_from_string(read_payload(int8_file, INT8_PAYLOAD))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.graph.node}


def test_load_learner_int8_runs_the_stored_graph_and_agrees_with_fp32(int8_file, digits_folder):
    files = sorted(digits_folder.rglob("*.png"))
    int8 = load_learner(int8_file, precision="int8")
    fp32 = load_learner(int8_file, backend="onnxruntime")
    assert isinstance(int8.runner, OrtInt8Runner) and (int8.backend, int8.precision) == ("onnxruntime", "int8")
    assert fp32.precision == "fp32" and "precision=int8" in repr(int8)
    p8, p32 = int8.predict_batch(files, progress=False), fp32.predict_batch(files, progress=False)
    assert (p8.argmax(1) == p32.argmax(1)).float().mean() >= 0.9
    assert not torch.equal(p8, p32)  # a different graph ran
    label, idx, probs = int8.predict(files[0])
    assert label == int8.vocab[int(idx)] and torch.allclose(probs, p8[0], atol=1e-5)
    assert load_learner(int8_file, backend="auto").precision == "fp32"  # auto never picks int8


def test_a_refused_export_writes_nothing(learn, tmp_path):
    new, old = tmp_path / "new.vtl", tmp_path / "old.vtl"
    old.write_bytes(b"an earlier export")
    for dest in (new, old):
        with pytest.raises(Int8Refused, match=r"int8 refused for '.*\.vtl': accuracy drops .* max_drop -1 "):
            learn.export(dest, int8=True, max_drop=-1)
    assert not new.exists() and old.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.vtl"]  # no temporary left either


def test_a_file_without_int8_says_how_to_add_it(fp32_file, capsys):
    with pytest.raises(ValueError, match=r"has no int8 graph: add one with `vision-tl quantize .*--calib DIR` .*"
                                         r"learn.export\(\.\.\., int8=True\)"):
        load_learner(fp32_file, precision="int8")
    assert main(["predict", str(fp32_file), str(fp32_file), "--precision", "int8"]) == 1
    assert "vision-tl quantize" in capsys.readouterr().err
    assert "int8:          none (vision-tl quantize" in _info(fp32_file, capsys)


def test_int8_runs_in_onnxruntime_only(int8_file):
    with pytest.raises(ValueError, match="precision='int8' runs in onnxruntime"):
        load_learner(int8_file, backend="torch", precision="int8")
    with pytest.raises(ValueError, match="precision must be one of"):
        load_learner(int8_file, precision="int4")


def test_cli_quantize_refuses_and_leaves_the_file_then_stores_and_predicts(fp32_file, digits_folder, tmp_path, capsys):
    path = shutil.copy(fp32_file, tmp_path / "m.vtl")
    before = path.read_bytes()
    assert main(["quantize", str(path), "--calib", str(digits_folder), "--max-drop", "-1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"int8 refused for {str(path)!r}" in err and "held-out images" in err
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.vtl"]

    assert main(["quantize", str(path), "--calib", str(digits_folder), "--max-drop", str(MAX_DROP), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["n_calib"], report["n_check"]) == (100, 100) and report["agreement"] >= 90
    assert read_manifest(path)[INT8_ENTRY]["drop"] == report["drop"]
    assert f"drop {report['drop']:+.2f} points" in _info(path, capsys)

    assert main(["predict", str(path), str(digits_folder), "--precision", "int8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    truth = [r["file"].split("/")[-2] for r in rows]
    assert len(rows) == 200 and np.mean([r["label"] == t for r, t in zip(rows, truth)]) > 0.8
    assert main(["evaluate", str(path), str(digits_folder), "--precision", "int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.8


def _info(path, capsys) -> str:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out
