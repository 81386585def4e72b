"""MixUp and CutMix change the training batch and loss as fastai documents, and leave validation alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vision_tl.models.heads import create_head  # noqa: E402
from vision_tl.train.callbacks import Callback  # noqa: E402
from vision_tl.train.learner import TrainingLearner  # noqa: E402
from vision_tl.train.mixup import CutMix, MixUp, per_item_loss  # noqa: E402


def tiny_model(c: int = 3) -> nn.Sequential:
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
    return nn.Sequential(body, create_head(8, c, lin_ftrs=[8], ps=0.0))


class Spy(Callback):
    """Records, per batch, the raw batch, what the model saw, the loss and the mixer's state."""

    order = 5  # before the mixer (20): sees the raw batch in before_batch

    def __init__(self, mixer):
        self.mixer, self.rows = mixer, []

    def before_batch(self):
        self.raw = (self.learn.xb[0].clone(), self.learn.yb[0].clone())

    def after_loss(self):
        self.rows.append({
            "training": self.learn.training, "raw": self.raw, "xb": self.learn.xb[0].clone(),
            "pred": self.learn.pred.detach().clone(), "loss": float(self.learn.loss),
            "lam": None if self.mixer.lam is None else self.mixer.lam.clone(),
            "yb1": self.mixer.yb1[0].clone() if self.mixer.yb1 else None,
        })


@pytest.fixture
def fit_with(tiny_dls):
    """The helper below, its data from the ``tiny_dls`` fixture."""

    def fit_with(mixer, seed=0):
        torch.manual_seed(seed)
        learn = TrainingLearner(tiny_dls(n=32, bs=8), tiny_model(), device="cpu", lr=1e-3)
        spy = Spy(mixer)
        learn.fit(1, cbs=[mixer, spy])
        return learn, spy

    return fit_with


def test_mixup_training_loss_is_the_lam_weighted_mix_of_both_labels(fit_with):
    learn, spy = fit_with(MixUp(0.4))
    train = [r for r in spy.rows if r["training"]]
    assert train
    ce = nn.CrossEntropyLoss(reduction="none")
    for r in train:
        lam, (x, y), y1 = r["lam"], r["raw"], r["yb1"]
        assert ((lam >= 0.5) & (lam <= 1)).all()  # fastai folds lam to max(lam, 1 - lam)
        expected = (lam * ce(r["pred"], y) + (1 - lam) * ce(r["pred"], y1)).mean()
        assert r["loss"] == pytest.approx(float(expected), rel=1e-5)
        assert float(expected) != pytest.approx(float(ce(r["pred"], y).mean()), rel=1e-4)
        # each image is the same blend of itself and a shuffled partner of the batch
        for i in range(len(x)):
            blends = [lam[i] * x[i] + (1 - lam[i]) * x[j] for j in range(len(x)) if y[j] == y1[i]]
            assert any(torch.allclose(r["xb"][i], b, atol=1e-6) for b in blends)
    assert isinstance(learn.loss_func, nn.CrossEntropyLoss)  # restored after fit


def test_mixup_and_cutmix_leave_validation_alone(fit_with):
    for mixer in (MixUp(), CutMix()):
        _, spy = fit_with(mixer)
        valid = [r for r in spy.rows if not r["training"]]
        assert valid
        for r in valid:
            x, y = r["raw"]
            assert torch.equal(r["xb"], x) and r["lam"] is None
            assert r["loss"] == pytest.approx(float(nn.functional.cross_entropy(r["pred"], y)), rel=1e-5)


def test_cutmix_pastes_one_box_and_weighs_the_loss_by_the_kept_area(fit_with):
    _, spy = fit_with(CutMix(1.0), seed=3)
    train = [r for r in spy.rows if r["training"]]
    ce = nn.CrossEntropyLoss(reduction="none")
    saw_box = False
    for r in train:
        (x, y), xb, lam = r["raw"], r["xb"], r["lam"]
        changed = (xb != x).any(1)  # (N, H, W): pixels that came from the partner
        kept = float(lam[0])
        assert torch.all(lam == lam[0])
        h, w = x.shape[-2:]
        rows, cols = torch.where((xb != x).any(1).any(0))
        if len(rows):
            saw_box = True
            box_area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert kept == pytest.approx(1 - float(box_area) / (h * w), abs=1e-6)
            assert int(changed.sum(0).bool().sum()) == int(box_area)  # a rectangle
        expected = (kept * ce(r["pred"], y) + (1 - kept) * ce(r["pred"], r["yb1"])).mean()
        assert r["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert saw_box


def test_mixup_is_repeatable_with_a_seed_and_differs_from_plain_training(fit_with):
    _, a = fit_with(MixUp(), seed=1)
    _, b = fit_with(MixUp(), seed=1)
    assert [r["loss"] for r in a.rows] == [r["loss"] for r in b.rows]
    assert not torch.equal(a.rows[0]["xb"], a.rows[0]["raw"][0])


def test_mixup_rejects_a_non_positive_alpha():
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        MixUp(0)


def test_per_item_loss_works_without_a_reduction_attribute():
    pred, targ = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    expected = nn.CrossEntropyLoss(reduction="none")(pred, targ)
    torch.testing.assert_close(per_item_loss(nn.functional.cross_entropy, pred, targ), expected)
    torch.testing.assert_close(per_item_loss(nn.CrossEntropyLoss(), pred, targ), expected)
