"""Losses with fastai's names: flattened CE/BCE that know their activation, and label smoothing as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vision_tl.train.learner import TrainingLearner
from vision_tl.train.losses import (
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
    LabelSmoothingCrossEntropy,
    default_loss_func,
)


def test_cross_entropy_flat_equals_torch_cross_entropy_and_moves_the_class_axis():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(6, 4, generator=g), torch.randint(0, 4, (6,), generator=g)
    assert torch.equal(CrossEntropyLossFlat()(out, y), nn.CrossEntropyLoss()(out, y))
    # (N, C, L) outputs with the classes on axis 1, as fastai's axis=1
    seq, ys = torch.randn(2, 4, 3, generator=g), torch.randint(0, 4, (2, 3), generator=g)
    expected = F.cross_entropy(seq.transpose(1, 2).reshape(-1, 4), ys.reshape(-1))
    assert torch.allclose(CrossEntropyLossFlat(axis=1)(seq, ys), expected)
    loss = CrossEntropyLossFlat()
    assert torch.equal(loss.decodes(loss.activation(out)), out.argmax(1))
    assert torch.allclose(loss.activation(out).sum(1), torch.ones(6))


def test_bce_flat_is_sigmoid_bce_and_decodes_with_its_threshold():
    g = torch.Generator().manual_seed(1)
    out, y = torch.randn(5, 3, generator=g), (torch.rand(5, 3, generator=g) > 0.5).float()
    loss = BCEWithLogitsLossFlat(thresh=0.3)
    assert torch.allclose(loss(out, y), F.binary_cross_entropy_with_logits(out, y))
    assert torch.allclose(loss(out, y.long()), loss(out, y))  # integer targets are made float
    probs = loss.activation(out)
    assert torch.equal(probs, torch.sigmoid(out))
    assert torch.equal(loss.decodes(probs), probs > 0.3) and loss.decodes(probs).dtype == torch.bool
    loss.reduction = "none"  # what get_preds(with_loss=True) does
    assert loss(out, y).shape == (5, 3)
    with pytest.raises(ValueError, match="thresh must be in"):
        BCEWithLogitsLossFlat(thresh=1.5)
    with pytest.raises(ValueError, match=r"one-hot floats \(N, C\)"):
        BCEWithLogitsLossFlat()(out, y[:, 0])


def test_label_smoothing_is_one_minus_eps_nll_plus_eps_mean_neg_log_prob():
    g = torch.Generator().manual_seed(2)
    out, y = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    logp = torch.log_softmax(out, dim=1)
    nll = -logp[torch.arange(8), y]
    eps = 0.1
    per_item = (1 - eps) * nll + eps * (-logp).mean(1)  # hand-computed, fastai's documented formula
    assert torch.allclose(LabelSmoothingCrossEntropy(eps)(out, y), per_item.mean())
    assert torch.allclose(LabelSmoothingCrossEntropy(eps, reduction="none")(out, y), per_item)
    assert torch.allclose(LabelSmoothingCrossEntropy(eps, reduction="sum")(out, y), per_item.sum())
    # smoothing changes the loss; eps=0 is plain cross-entropy; it equals torch's label_smoothing
    assert not torch.allclose(LabelSmoothingCrossEntropy(eps)(out, y), F.cross_entropy(out, y))
    assert torch.allclose(LabelSmoothingCrossEntropy(0.0)(out, y), F.cross_entropy(out, y))
    assert torch.allclose(LabelSmoothingCrossEntropy(eps)(out, y), F.cross_entropy(out, y, label_smoothing=eps))
    with pytest.raises(ValueError, match="eps must be in"):
        LabelSmoothingCrossEntropy(1.0)


def test_the_learner_picks_bce_for_multi_label_data_and_flat_cross_entropy_otherwise(tmp_path, tiny_dls):
    class MultiDLs(tiny_dls):
        multi_label = True

    assert isinstance(default_loss_func(MultiDLs()), BCEWithLogitsLossFlat)
    assert isinstance(default_loss_func(tiny_dls()), CrossEntropyLossFlat)
    dls = tiny_dls()
    learn = TrainingLearner(dls, nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)), path=tmp_path)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)
    # the same numbers as before (nn.CrossEntropyLoss): validation loss and per-item losses
    loss = learn.validate()[0]
    x, y = dls.valid.x, dls.valid.y
    with torch.no_grad():
        out = learn.model(x)
    assert loss == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
    probs, targs, losses = learn.get_preds(with_loss=True)
    assert torch.allclose(losses, F.cross_entropy(out, y, reduction="none"), atol=1e-6)
    assert torch.allclose(probs, torch.softmax(out, 1), atol=1e-6)


def test_regression_data_gets_mse_on_flattened_targets():
    from types import SimpleNamespace

    from vision_tl.train.losses import MSELossFlat, default_loss_func

    assert isinstance(default_loss_func(SimpleNamespace(multi_label=False, target_kind="regression")), MSELossFlat)
    assert isinstance(default_loss_func(SimpleNamespace(multi_label=False, target_kind="category")),
                      CrossEntropyLossFlat)
    out, targ = torch.randn(6, 1), torch.randn(6)  # a RegressionBlock target of one value per item is (N,)
    assert torch.allclose(MSELossFlat()(out, targ), F.mse_loss(out[:, 0], targ))
