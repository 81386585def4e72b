"""Multi-label metrics agree with fastai's definitions and with scikit-learn's averages."""

from __future__ import annotations

import warnings

import pytest
import torch

from vision_tl.metrics import (
    F1ScoreMulti,
    PrecisionMulti,
    RecallMulti,
    accuracy,
    accuracy_multi,
    multilabel_confusion_matrix,
)

skm = pytest.importorskip("sklearn.metrics")


def _random_set(seed: int, n: int = 40, c: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and one-hot targets, with an all-empty row and a class never present nor predicted."""
    g = torch.Generator().manual_seed(seed)
    targs = (torch.rand(n, c, generator=g) < 0.35).float()
    logits = torch.randn(n, c, generator=g) + 2.5 * (targs - 0.5)
    targs[0] = 0
    logits[0] = -5
    targs[:, -1], logits[:, -1] = 0, -5
    return logits, targs


def test_accuracy_multi_counts_every_item_class_decision_after_a_sigmoid():
    logits = torch.tensor([[2.0, -1.0, 0.1], [-3.0, 0.5, -0.2]])
    targs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    # sigmoid > 0.5: [[1, 0, 1], [0, 1, 0]] -> 4 of 6 right
    assert float(accuracy_multi(logits, targs)) == pytest.approx(4 / 6)
    # probabilities given directly, another threshold: probs > 0.55 -> [[1, 0, 0], [0, 1, 0]] -> 5 of 6
    assert float(accuracy_multi(torch.sigmoid(logits), targs, thresh=0.55, sigmoid=False)) == pytest.approx(5 / 6)
    # sigmoid > 0.2 (logit > -1.39) -> [[1, 1, 1], [0, 1, 1]] -> 4 of 6
    assert float(accuracy_multi(logits, targs, thresh=0.2)) == pytest.approx(4 / 6)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", "samples"])
@pytest.mark.parametrize("seed", [0, 1])
def test_multi_label_f1_precision_recall_match_sklearn(average, seed):
    logits, targs = _random_set(seed)
    pred = (torch.sigmoid(logits) > 0.5).int().numpy()
    y = targs.int().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the empty row/class (and scores them 0)
        expected = {F1ScoreMulti: skm.f1_score, PrecisionMulti: skm.precision_score, RecallMulti: skm.recall_score}
        for ours, theirs in expected.items():
            want = theirs(y, pred, average=average, zero_division=0)
            assert float(ours(average=average)(logits, targs)) == pytest.approx(want, abs=1e-6), (ours, average)


def test_multi_label_threshold_and_sigmoid_options_are_applied_before_scoring():
    logits, targs = _random_set(2)
    probs = torch.sigmoid(logits)
    pred = (probs > 0.3).int().numpy()
    want = skm.f1_score(targs.int().numpy(), pred, average="macro", zero_division=0)
    assert float(F1ScoreMulti(thresh=0.3, sigmoid=False)(probs, targs)) == pytest.approx(want, abs=1e-6)
    assert float(F1ScoreMulti(thresh=0.3)(logits, targs)) == pytest.approx(want, abs=1e-6)
    per_class = F1ScoreMulti(thresh=0.3).per_class(logits, targs)
    assert per_class.tolist() == pytest.approx(
        skm.f1_score(targs.int().numpy(), pred, average=None, zero_division=0).tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="average must be one of"):
        F1ScoreMulti(average="binary")


def test_multilabel_confusion_matrix_matches_sklearn_layout():
    logits, targs = _random_set(3)
    ours = multilabel_confusion_matrix(logits, targs).numpy()
    theirs = skm.multilabel_confusion_matrix(targs.int().numpy(), (torch.sigmoid(logits) > 0.5).int().numpy())
    assert (ours == theirs).all() and ours.shape == (6, 2, 2)


def test_single_label_metrics_reject_one_hot_targets_and_name_the_multi_label_ones():
    logits, targs = _random_set(4)
    with pytest.raises(ValueError, match="use accuracy_multi"):
        accuracy(logits, targs)
    with pytest.raises(ValueError, match=r"same shape \(N, C\)"):
        accuracy_multi(logits, targs[:, 0])
