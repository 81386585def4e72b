"""An untrained learner: get_preds on the training set, TTA on a test set, the cached predictor, the report."""

from __future__ import annotations

import copy

import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from vision_tl import ImageDataLoaders, Resize, aug_transforms, vision_learner
from vision_tl.data.batch_tfms import AffineWarp, Lighting, batch_tfm_from_dict
from vision_tl.inference.interpret import ClassificationInterpretation


@pytest.fixture(scope="module")
def learn(class_folder, tmp_path_factory):
    """resnet10t (random init), 27 training images in batches of 8 (the loader drops 3), with augmentation."""
    dls = ImageDataLoaders.from_path_func(
        class_folder, sorted(class_folder.rglob("*.jpg")), lambda p: p.parent.name, valid_pct=0.25, seed=0,
        item_tfms=Resize(40), batch_tfms=aug_transforms(size=32), bs=8, num_workers=0, device="cpu",
    )
    return vision_learner(dls, "resnet10t", pretrained=False, path=tmp_path_factory.mktemp("learn"))


def test_get_preds_on_the_training_set_is_every_item_in_order_without_augmentation(learn):
    train = learn.dls.train
    assert len(train) * train.bs < len(learn.dls.train_ds)  # the loader itself drops the last batch
    state = train.state_dict()
    probs, targets = learn.get_preds(ds_idx=0)
    assert targets.tolist() == learn.dls.train_ds.labels
    expected = learn.predict_batch(learn.dls.train_ds.items, bs=8, num_workers=0, progress=False)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(learn.get_preds(ds_idx=0)[0], probs)
    assert train.state_dict() == state  # the training loader's epoch (shuffle, augmentation) is untouched


def test_interpretation_of_the_training_set_matches_items_to_predictions(learn):
    interp = ClassificationInterpretation.from_learner(learn, ds_idx=0)
    assert interp.targets.tolist() == learn.dls.train_ds.labels
    assert interp.items == learn.dls.train_ds.items
    with pytest.raises(ValueError, match="ds_idx must be 0 .* got 2"):
        learn.get_preds(ds_idx=2)


def test_tta_on_an_unlabelled_test_set_returns_no_targets(learn):
    items = learn.dls.valid_ds.items[:5]
    probs, targets = learn.tta(dl=learn.dls.test_dl(items), n=2)
    assert targets is None and probs.shape == (5, learn.dls.c)
    plain, _ = learn.tta(dl=learn.dls.test_dl(items), n=1, beta=1.0)
    torch.testing.assert_close(plain, learn.predict_batch(items, num_workers=0, progress=False), atol=1e-5, rtol=1e-4)


def test_tta_targets_follow_the_dataset_order(learn):
    probs, targets = learn.tta(n=1)
    assert targets.tolist() == learn.dls.valid_ds.labels and probs.shape == (len(targets), learn.dls.c)


class _FavourFirstClass(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tensor([100.0, 0.0, 0.0])


def test_predict_reuses_its_predictor_until_the_model_changes(learn):
    f = learn.dls.valid_ds.items[0]
    first = learn._predictor()
    learn.predict(f)
    assert learn._predictor() is first
    old, vocab = learn.model, list(learn.dls.vocab)
    try:
        learn.model = torch.nn.Sequential(*copy.deepcopy(old), _FavourFirstClass())
        assert learn._predictor() is not first and learn._predictor().model is learn.raw_model
        assert learn.predict(f)[1] == 0  # the new model's answer, not the cached one's
        learn.dls.vocab[:] = ["x", "y", "z"]  # the vocab is part of the key too
        assert learn.predict(f)[0] == "x"
    finally:
        learn.model = old
        learn.dls.vocab[:] = vocab
    assert learn._predictor().model is old


def test_report_macro_averages_are_the_metrics():
    vocab = ["a", "b", "c"]  # "c" is neither a target nor predicted: the metrics leave it out
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.7, 0.3, 0.0]])  # preds a b a a
    targets = torch.tensor([0, 1, 1, 0])
    interp = ClassificationInterpretation(vocab, probs, targets)
    macro = interp.macro_avg()
    # sklearn over the classes present (a, b): the reference, not our own metric code
    prec, rec, f1, _ = precision_recall_fscore_support(targets, probs.argmax(1), labels=[0, 1], average="macro")
    assert (macro["precision"], macro["recall"], macro["f1"]) == pytest.approx((prec, rec, f1))
    rows = interp.classification_report()
    per = precision_recall_fscore_support(targets, probs.argmax(1), labels=[0, 1], zero_division=0)
    got = [r[k] for k in ("precision", "recall", "f1") for r in rows[:2]]
    assert got == pytest.approx([float(x) for v in per[:3] for x in v])
    last = interp.print_classification_report().splitlines()[-1].split()
    assert last[:2] == ["macro", "avg"] and float(last[4]) == pytest.approx(macro["f1"], abs=1e-3)
    assert [r["support"] for r in interp.classification_report()] == [2, 2, 0]


def test_batch_tfm_from_dict_rebuilds_the_saved_transforms():
    for t in (AffineWarp(size=32, max_rotate=5.0), Lighting(0.3)):
        assert batch_tfm_from_dict(t.to_dict()).to_dict() == t.to_dict()
    with pytest.raises(ValueError, match="unknown batch transform 'Normalize'"):
        batch_tfm_from_dict({"name": "Normalize"})
