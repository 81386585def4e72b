"""Multi-label classification end to end: a model learns 1-3 shapes per image, exports, and predicts label sets
the same way in memory, from a fresh process, in batches and through ONNX; interpretation is per class."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vision_tl import vision_learner
from vision_tl.data.factories import ImageDataLoaders
from vision_tl.data.item_tfms import Resize
from vision_tl.data.synthetic import make_synthetic_multi_label
from vision_tl.inference.interpret import ClassificationInterpretation
from vision_tl.inference.interpret_multi import MultiLabelInterpretation
from vision_tl.inference.load import load_learner
from vision_tl.inference.vtl import read_manifest
from vision_tl.metrics import F1ScoreMulti, accuracy_multi
from vision_tl.train.losses import BCEWithLogitsLossFlat

CLASSES = ("circle", "square", "triangle", "cross", "ring")


def _dls(path, bs=8):
    return ImageDataLoaders.from_csv(path, "labels.csv", label_delim=" ", valid_col="is_valid", item_tfms=Resize(32),
                                     bs=bs, num_workers=0, seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """Two cores shared by many runs: one intra-op thread is ~10x faster than two that wait on each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory):
    """96 images of 32 px (64 train, 32 valid), each with 1-3 of 5 coloured shapes; labels in labels.csv."""
    return make_synthetic_multi_label(tmp_path_factory.mktemp("ml"), n_images=96, classes=CLASSES, max_labels=3,
                                      valid_pct=1 / 3, size=32, seed=0)


@pytest.fixture(scope="module")
def trained(ml_data, one_thread):
    """A small timm resnet trained from scratch on ``ml_data`` (about 10-20 s on one CPU thread)."""
    torch.manual_seed(0)
    learn = vision_learner(_dls(ml_data), "test_resnet", pretrained=False, metrics=[accuracy_multi, F1ScoreMulti()],
                           path=ml_data)
    learn.fit_one_cycle(20, 1e-2)
    return learn


def test_multi_label_data_gives_one_hot_targets_and_the_bce_loss(ml_data):
    dls = _dls(ml_data)
    assert dls.multi_label and dls.vocab == sorted(CLASSES)
    xb, yb = dls.one_batch()
    assert yb.dtype == torch.float32 and yb.shape == (8, 5) and set(yb.sum(1).tolist()) <= {1.0, 2.0, 3.0}
    learn = vision_learner(dls, "test_resnet", pretrained=False)
    assert isinstance(learn.loss_func, BCEWithLogitsLossFlat) and learn.loss_func.thresh == 0.5


@pytest.mark.slow
def test_a_multi_label_model_learns_every_label_well_above_chance_and_a_fresh_process_predicts_the_same_sets(
        trained, tmp_path):
    probs, targs = trained.get_preds()
    # Chance bound: a model that ignores the image predicts each label with some rate q independent of whether it
    # is present; with prevalence p its expected F1 is 2pq/(p+q) <= 2p/(1+p) (q=1: always say yes). Here p <= 0.5,
    # so no image-blind model gets above 0.67 on any label; we ask for 0.85 and 0.2 above each label's own bound.
    f1 = F1ScoreMulti(sigmoid=False).per_class(probs, targs)
    p = targs.mean(0).double()
    blind = 2 * p / (1 + p)
    assert bool((blind <= 0.67).all())
    assert bool((f1 >= 0.85).all()) and bool((f1 >= blind + 0.2).all()), (f1, blind)

    items = [str(f) for f in trained.dls.valid_ds.items]
    in_memory = [trained.predict(f)[0] for f in items]
    fname = trained.export(tmp_path / "shapes.vtl")
    code = ("import json, sys\nfrom vision_tl import load_learner\n"
            "pred = load_learner(sys.argv[1], cpu=True)\n"
            "out = [(pred.predict(f)[0], pred.predict(f)[2].tolist()) for f in json.loads(sys.stdin.read())]\n"
            "print(json.dumps(out))")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code, str(fname)], input=json.dumps(items), capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    fresh = json.loads(r.stdout)
    assert [labels for labels, _ in fresh] == in_memory
    assert np.allclose([pr for _, pr in fresh], probs.numpy(), atol=1e-4)
    vocab = trained.dls.vocab
    truth = [[vocab[k] for k in sorted(labs)] for labs in trained.dls.valid_ds.labels]
    assert sum(a == b for a, b in zip(in_memory, truth)) >= 0.7 * len(items)  # most whole label sets exactly right


@pytest.mark.slow
def test_predict_returns_labels_a_bool_mask_and_sigmoid_probabilities_like_fastai(trained, tmp_path):
    f = trained.dls.valid_ds.items[0]
    labels, mask, probs = trained.predict(f)
    assert mask.dtype == torch.bool and mask.shape == (5,) and probs.shape == (5,)
    assert torch.equal(mask, probs > 0.5) and labels == [trained.dls.vocab[i] for i in mask.nonzero().flatten()]
    assert not torch.allclose(probs.sum(), torch.tensor(1.0))  # independent sigmoids, not a softmax
    batch = trained.predict_batch(trained.dls.valid_ds.items[:6], progress=False)
    assert torch.allclose(batch[0], probs, atol=1e-5)
    loaded = load_learner(trained.export(tmp_path / "m.vtl"), cpu=True)
    l2, m2, p2 = loaded.predict(f)
    assert l2 == labels and torch.equal(m2, mask) and torch.allclose(p2, probs, atol=1e-4)
    assert torch.allclose(loaded.predict_batch(trained.dls.valid_ds.items[:6], progress=False), batch, atol=1e-4)
    assert loaded.decode(batch) == [trained.predict(x)[0] for x in trained.dls.valid_ds.items[:6]]


@pytest.mark.slow
def test_export_saves_the_threshold_and_the_multi_label_flag(trained, tmp_path):
    m = read_manifest(trained.export(tmp_path / "a.vtl"))
    assert (m["multi_label"], m["activation"], m["threshold"], m["format_version"]) == (True, "sigmoid", 0.5, 2)
    old = trained.loss_func
    try:
        trained.loss_func = BCEWithLogitsLossFlat(thresh=0.2)
        f = trained.dls.valid_ds.items[1]
        labels, mask, probs = trained.predict(f)
        assert torch.equal(mask, probs > 0.2)
        loaded = load_learner(trained.export(tmp_path / "b.vtl"), cpu=True)
        assert loaded.thresh == 0.2 and read_manifest(tmp_path / "b.vtl")["threshold"] == 0.2
        assert loaded.predict(f)[0] == labels
    finally:
        trained.loss_func = old


@pytest.mark.slow
@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
                    reason="needs the onnx extra")
def test_onnx_export_of_a_multi_label_model_has_the_sigmoid_inside_and_matches_torch(trained, tmp_path):
    from vision_tl.inference.onnx import check_onnx, onnx_session

    pred = load_learner(trained.export(tmp_path / "m.vtl"), cpu=True)
    path = trained.export_onnx(tmp_path / "m.onnx")
    imgs = torch.stack([torch.from_numpy(pred.preprocess(f)).permute(2, 0, 1) for f in trained.dls.valid_ds.items[:4]])
    assert check_onnx(path, pred, images=imgs) <= 1e-4
    sess = onnx_session(path)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["multi_label"]) is True and json.loads(meta["threshold"]) == 0.5
    out = sess.run(None, {"image": imgs.numpy()})[0]
    assert ((out >= 0) & (out <= 1)).all() and not np.allclose(out.sum(1), 1.0)


@pytest.mark.slow
def test_interpretation_gives_a_two_by_two_confusion_per_class_like_sklearn(trained):
    skm = pytest.importorskip("sklearn.metrics")
    interp = ClassificationInterpretation.from_learner(trained)
    assert isinstance(interp, MultiLabelInterpretation)
    probs, targs = trained.get_preds()
    cm = interp.confusion_matrix()
    expected = skm.multilabel_confusion_matrix(targs.int().numpy(), (probs > 0.5).int().numpy())
    assert cm.shape == (5, 2, 2) and (cm == expected).all()
    rows = interp.classification_report()
    assert [r["class"] for r in rows] == trained.dls.vocab and [r["support"] for r in rows] == targs.sum(0).tolist()
    text = interp.print_classification_report()
    assert "micro avg" in text and "samples avg" in text
    fig = interp.plot_confusion_matrix(return_fig=True)
    assert [ax.get_title() for ax in fig.axes[:5]] == trained.dls.vocab
    assert len(interp.plot_top_losses(4, return_fig=True).axes) >= 4
    # per-item losses: the BCE of each item, averaged over its classes
    _, _, losses = trained.get_preds(with_loss=True)
    logits = torch.logit(probs.double().clamp(1e-7, 1 - 1e-7))
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, targs.double(), reduction="none").mean(1)
    assert torch.allclose(losses.double(), want, atol=1e-3)


@pytest.mark.slow
def test_show_batch_and_show_results_title_every_label(trained):
    vocab = trained.dls.vocab
    fig = trained.dls.show_batch(max_n=4, return_fig=True)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4 and all(set(t.split(";")) <= set(vocab) for t in titles)
    assert any(";" in t for t in titles)  # some image has several labels
    fig = trained.show_results(max_n=4, return_fig=True)
    actual = [ax.get_title().split("\n")[0] for ax in fig.axes[:4]]
    assert actual == [";".join(vocab[k] for k in sorted(labs)) for labs in trained.dls.valid_ds.labels[:4]]


@pytest.mark.slow
def test_tta_averages_sigmoid_probabilities_and_returns_one_hot_targets(trained):
    probs, targs = trained.tta(n=2)
    want_probs, want_targs = trained.get_preds()
    assert torch.equal(targs, want_targs) and probs.shape == want_probs.shape
    assert ((probs >= 0) & (probs <= 1)).all() and not torch.allclose(probs.sum(1), torch.ones(len(probs)))


@pytest.mark.slow
def test_lr_find_and_fine_tune_run_on_multi_label_data(ml_data, one_thread, tmp_path):
    torch.manual_seed(0)
    learn = vision_learner(_dls(ml_data, bs=16), "test_resnet", pretrained=False, metrics=accuracy_multi, path=tmp_path)
    lrs = learn.lr_find(num_it=12, show_plot=False)
    assert all(np.isfinite(v) and v > 0 for v in lrs)
    learn.fine_tune(1, freeze_epochs=1)
    assert learn.recorder.values and all(np.isfinite(v).all() for v in learn.recorder.values)


def test_a_multi_label_manifest_needs_a_threshold_in_zero_one(tmp_path):
    from vision_tl.inference import vtl as ex

    base = {"format": ex.FORMAT_NAME, "format_version": 2, "model_config": {}, "vocab": ["a", "b"], "item_tfms": [],
            "weights_sha256": "0" * 64, "multi_label": True, "activation": "sigmoid", "threshold": 0.5}
    ex._check_manifest(tmp_path / "m.vtl", base)  # valid
    for bad in ({"threshold": None}, {"threshold": 1.5}, {"multi_label": "yes"}):
        with pytest.raises(ex.ExportFormatError, match="multi_label must be a bool with a threshold"):
            ex._check_manifest(tmp_path / "m.vtl", {**base, **bad})


def test_a_regression_datablock_model_exports_and_predicts_the_same_numbers(tmp_path, class_folder):
    """RegressionBlock -> MSELossFlat -> no activation; the .vtl has no vocab and loads to the same outputs."""
    from vision_tl import DataBlock, ImageBlock, RegressionBlock, get_image_files, load_learner

    def brightness(p):  # a number per image
        return float(len(p.stem)) / 10

    dls = DataBlock(blocks=(ImageBlock, RegressionBlock), get_items=get_image_files, get_y=brightness,
                    item_tfms=Resize(32)).dataloaders(class_folder, bs=8, num_workers=0, seed=0)
    learn = vision_learner(dls, "resnet10t", pretrained=False, path=tmp_path, y_range=(0, 2))
    assert type(learn.loss_func).__name__ == "MSELossFlat" and learn.preprocess.activation == "none"
    learn.fit(1, 1e-3)
    f = get_image_files(class_folder)[0]
    want = learn.predict(f)[0]
    pred = load_learner(learn.export("reg.vtl"), device="cpu")
    got = pred.predict(f)[0]
    assert got.shape == want.shape == (1,) and torch.allclose(got, want, atol=1e-4)
    assert 0 <= float(got) <= 2  # the y_range head travels in the export
