"""A trained learner: export/load parity, predict vs get_preds, TTA, interpretation, show_results, ONNX."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vision_tl import ImageDataLoaders, Resize, aug_transforms, load_learner, vision_learner
from vision_tl.inference.interpret import ClassificationInterpretation
from vision_tl.inference.predict import Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def learn(class_folder, tmp_path_factory):
    """resnet10t from scratch, 40 px items resized to 32 px on the batch, 1 epoch; label from a lambda."""
    dls = ImageDataLoaders.from_path_func(
        class_folder, sorted(class_folder.rglob("*.jpg")), lambda p: p.parent.name.upper(), valid_pct=0.25, seed=0,
        item_tfms=Resize(40), batch_tfms=aug_transforms(size=32), bs=8, num_workers=0, device="cpu",
    )
    learn = vision_learner(dls, "resnet10t", pretrained=False, path=tmp_path_factory.mktemp("learn"))
    learn.fit_one_cycle(1, 1e-3)
    return learn


def _valid_files(learn):
    return list(learn.dls.valid_ds.items)


def test_exported_learner_predicts_like_the_in_memory_one(learn, tmp_path):
    path = learn.export(tmp_path / "model.vtl")  # the lambda label function must not matter
    loaded = load_learner(path, device="cpu")
    assert loaded.vocab == learn.dls.vocab
    for f in _valid_files(learn)[:5]:
        a, b = learn.predict(f), loaded.predict(f)
        assert a[:2] == b[:2]
        torch.testing.assert_close(a[2], b[2], atol=1e-5, rtol=1e-4)


def test_relative_export_name_goes_under_learn_path(learn):
    path = learn.export("rel.vtl")
    assert path == learn.path / "rel.vtl" and path.is_file()


def test_predict_uses_the_validation_pipeline_of_get_preds(learn):
    probs, targets = learn.get_preds()
    files = _valid_files(learn)
    batch = learn.predict_batch(files, bs=4, num_workers=0, progress=False)
    torch.testing.assert_close(batch, probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(learn.predict(files[0])[2], probs[0], atol=1e-5, rtol=1e-4)
    assert targets.tolist() == learn.dls.valid_ds.labels


def test_learner_top_k_matches_its_probabilities(learn):
    f = _valid_files(learn)[0]
    label, idx, probs = learn.predict(f)
    top = learn.top_k(f, k=2)
    assert top[0][0] == label and top[0][1] == pytest.approx(float(probs[idx]))
    second = int(probs.argsort(descending=True)[1])
    assert len(top) == 2 and top[1] == (learn.dls.vocab[second], pytest.approx(float(probs[second])))


def test_interpretation_of_a_loaded_model_says_what_it_needs(learn, tmp_path):
    loaded = load_learner(learn.export(tmp_path / "m.vtl"), device="cpu")
    with pytest.raises(TypeError, match="training Learner.*vision-tl evaluate"):
        ClassificationInterpretation.from_learner(loaded)


def test_tta_blends_augmented_and_plain_predictions(learn):
    preds, targets = learn.tta(n=2)
    n = len(learn.dls.valid_ds)
    assert preds.shape == (n, learn.dls.c) and targets.shape == (n,)
    torch.testing.assert_close(preds.sum(1), torch.ones(n), atol=1e-5, rtol=0)
    plain = learn.tta(n=1, beta=1.0)[0]  # beta=1: the plain pass only
    torch.testing.assert_close(plain, learn.get_preds()[0], atol=1e-5, rtol=1e-4)
    assert (preds - plain).abs().max() > 1e-3  # the augmented passes count: not the plain pass alone


def test_interpretation_from_learner(learn, capsys):
    from sklearn.metrics import accuracy_score, confusion_matrix

    interp = ClassificationInterpretation.from_learner(learn)
    probs, targets = learn.get_preds()
    preds, vocab = probs.argmax(1).numpy(), learn.dls.vocab
    want = confusion_matrix(targets.numpy(), preds, labels=[0, 1, 2])
    assert interp.confusion_matrix().tolist() == want.tolist()
    for min_val in range(1, int(want.max()) + 2):  # every off-diagonal cell with >= min_val items, largest first
        cells = [(vocab[i], vocab[j], int(want[i, j])) for i in range(3) for j in range(3)
                 if i != j and want[i, j] >= min_val]
        got = interp.most_confused(min_val=min_val)
        assert sorted(got) == sorted(cells) and [c for *_, c in got] == sorted((c for *_, c in got), reverse=True)
    assert interp.most_confused(min_val=1)  # an untrained-for-long model confuses something: not vacuous
    losses, idxs = interp.top_losses(3)  # the per-item cross-entropy, largest first
    nll = -probs[torch.arange(len(targets)), targets].log()
    torch.testing.assert_close(losses, nll.sort(descending=True).values[:3], atol=1e-4, rtol=1e-4)
    assert torch.equal(nll[idxs], nll.sort(descending=True).values[:3])
    titles = [ax.get_title() for ax in interp.plot_top_losses(3, return_fig=True).axes if ax.get_title()]
    assert [t.split("\n")[0] for t in titles] == [f"{vocab[preds[int(i)]]}/{vocab[int(targets[i])]}" for i in idxs]
    cm_fig = interp.plot_confusion_matrix(return_fig=True)
    assert [t.get_text() for t in cm_fig.axes[0].texts] == [str(v) for v in want.flatten()]
    interp.print_classification_report()
    acc_line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.split()[0] == "accuracy").split()
    assert float(acc_line[1]) == pytest.approx(accuracy_score(targets, preds), abs=5e-4)
    assert int(acc_line[2]) == len(targets)


def test_show_results_titles_actual_and_predicted(learn):
    fig = learn.show_results(max_n=4, return_fig=True)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 4
    fig = learn.show_results(max_n=len(learn.dls.valid_ds), return_fig=True)  # all 9, some of them wrong
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    probs, targets = learn.get_preds()  # each validation image: actual, then the model's answer
    vocab = learn.dls.vocab
    assert titles == [f"{vocab[int(t)]}\n{vocab[int(p)]}" for t, p in zip(targets, probs.argmax(1))]
    assert (probs.argmax(1) != targets).any()  # so that swapping actual and predicted would show


def test_predictor_from_learner_carries_the_batch_resize(learn):
    pred = Predictor.from_learner(learn)
    assert [type(t).__name__ for t in pred.batch_tfms] == ["AffineWarp", "Lighting"]
    assert pred.item_tfms[0].size == (40, 40)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="needs the onnx extra (onnx, onnxscript, onnxruntime)")
@pytest.mark.parametrize("input_dtype", ["uint8", "float32"])
def test_onnx_export_matches_torch(learn, tmp_path, input_dtype):
    import onnx

    from vision_tl.inference.onnx import check_onnx, onnx_session

    path = learn.export_onnx(tmp_path / "model.onnx", input_dtype=input_dtype)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # one file, no temp left
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["input_dtype"] == input_dtype and meta["input_size"] == "[40, 40]"
    pred = Predictor.from_learner(learn)
    assert check_onnx(path, pred) < 1e-4
    # on real images, with a batch size the export never saw
    files = _valid_files(learn)[:5]
    x = torch.stack([torch.from_numpy(pred.preprocess(f).copy()).permute(2, 0, 1) for f in files])
    feed = x.numpy() if input_dtype == "uint8" else (x.float() / 255).numpy()
    ort = onnx_session(path).run(None, {"image": feed})[0]
    torch.testing.assert_close(torch.from_numpy(ort), pred.predict_batch(files, progress=False), atol=1e-4, rtol=1e-3)
