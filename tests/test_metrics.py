"""Single-label metrics (``vision_tl/metrics.py``): values against hand computation, shapes checked."""

from __future__ import annotations

import pytest
import torch

from vision_tl.metrics import F1Score, Precision, Recall, accuracy, error_rate, top_k_accuracy


def _preds(labels: list[int], c: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(labels), c).float()


def test_accuracy_error_rate_top_k():
    from sklearn.metrics import accuracy_score, top_k_accuracy_score

    preds = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    targs = torch.tensor([0, 1, 1, 2, 2])  # top-1 right: items 0, 2, 4; top-2 right: also item 1
    assert float(accuracy(preds, targs)) == pytest.approx(0.6) == accuracy_score(targs, preds.argmax(1))
    assert float(error_rate(preds, targs)) == pytest.approx(0.4)
    assert float(top_k_accuracy(preds, targs, k=2)) == pytest.approx(0.8) == top_k_accuracy_score(targs, preds, k=2)
    assert float(top_k_accuracy(preds, targs, k=5)) == pytest.approx(1.0)  # k is capped at the 3 classes


def test_macro_f1_precision_recall_match_hand_computation():
    targs = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = _preds([0, 0, 1, 1, 2, 2], 3)
    # class 0: tp2 fp0 fn1; class 1: tp1 fp1 fn1; class 2: tp1 fp1 fn0
    assert float(Precision()(preds, targs)) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert float(Recall()(preds, targs)) == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert float(F1Score()(preds, targs)) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        accuracy(torch.rand(2, 3), torch.tensor([0, 1, 2]))
