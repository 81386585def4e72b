"""Pure functions: learning-rate expansion, one-cycle, LR-finder suggestions, metrics."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vision_tl.metrics import F1Score, Precision, Recall, accuracy, error_rate, top_k_accuracy
from vision_tl.models.heads import create_head
from vision_tl.train.learner import Learner
from vision_tl.train.lr_find import minimum, slide, steep, suggest_lrs, valley
from vision_tl.train.schedule import (
    expand_lr,
    layer_decay_mults,
    one_cycle_lr,
    one_cycle_mom,
    smooth,
)

sys.path.insert(0, str(Path(__file__).parent))
from tinydata import TinyDLs  # noqa: E402


def test_float_lr_is_the_same_for_every_group():
    assert expand_lr(1e-3, 3) == [1e-3] * 3


def test_slice_hi_gives_body_a_tenth_and_head_hi():
    assert expand_lr(slice(1e-2), 3) == pytest.approx([1e-3, 1e-3, 1e-2])


def test_slice_lo_hi_is_log_spaced():
    assert expand_lr(slice(1e-5, 1e-3), 3) == pytest.approx([1e-5, 1e-4, 1e-3])


@pytest.mark.parametrize("lr", [[1e-3, 1e-3], "fast", slice(1e-3, 1e-2, 2), -1.0])
def test_lr_of_the_wrong_shape_is_rejected_with_the_value(lr):
    with pytest.raises(ValueError, match="lr"):
        expand_lr(lr, 3)


def test_layer_decay_is_geometric_towards_the_input():
    assert layer_decay_mults(3, 0.5) == [0.25, 0.5, 1.0]


def test_one_cycle_starts_low_peaks_at_pct_start_and_ends_near_zero():
    assert one_cycle_lr(0.0, 1.0, div=25) == pytest.approx(1 / 25)
    assert one_cycle_lr(0.25, 1.0, pct_start=0.25) == pytest.approx(1.0)
    assert one_cycle_lr(1.0, 1.0, div_final=1e5) == pytest.approx(1e-5)
    assert one_cycle_mom(0.25, (0.95, 0.85, 0.95), 0.25) == pytest.approx(0.85)
    assert one_cycle_mom(1.0) == pytest.approx(0.95)


def test_lr_finder_suggestions_sit_on_the_descending_part():
    lrs = [1e-7 * (1e8) ** (i / 99) for i in range(100)]
    # loss flat, then falling between 1e-4 and 1e-2, then exploding
    losses = [2.0 - 1.5 * min(1, max(0, (math.log10(lr) + 4) / 2)) + (10 * (lr - 1e-1) if lr > 1e-1 else 0) for lr in lrs]
    s = suggest_lrs(lrs, losses, (minimum, steep, valley, slide), num_it=100)
    assert s._fields == ("minimum", "steep", "valley", "slide")
    assert 1e-4 <= s.valley <= 1e-2
    assert 1e-4 <= s.steep <= 1e-2
    assert 1e-4 <= s.slide <= 1e-1
    assert s.minimum < 1e-1


def test_a_suggestion_function_takes_and_returns_what_fastais_do():
    """fastai's signature: (lrs, losses, num_it) -> (lr, (lr, loss)), on tensors too; partials keep their name."""
    from functools import partial

    lrs = torch.logspace(-7, 1, 100)
    losses = torch.cat([torch.full((40,), 2.0), torch.linspace(2.0, 0.5, 40), torch.linspace(0.5, 5.0, 20)])
    for f in (minimum, steep, valley, slide):
        lr, (x, y) = f(lrs, losses, 100)
        assert isinstance(lr, float) and 1e-7 <= x <= 10 and 0.4 <= y <= 5.0
    assert suggest_lrs(lrs, losses, partial(slide, lr_diff=10))._fields == ("slide",)
    with pytest.raises(ValueError, match="different names"):
        suggest_lrs(lrs, losses, (valley, valley))


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


def test_smooth_is_the_debiased_moving_average():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([1.0, 3.0], beta=0.5) == pytest.approx([1.0, (0.25 + 1.5) / 0.75])


def _fp16_learner(tmp_path) -> Learner:
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    model = nn.Sequential(body, create_head(8, 3, lin_ftrs=[8]))  # the head's dropout draws from torch's RNG
    return Learner(TinyDLs(), model, path=tmp_path, device="cpu").to_fp16(force=True)


def _seeded_fine_tune(tmp_path, with_lr_find: bool) -> tuple[dict, list]:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    learn = _fp16_learner(tmp_path)
    if with_lr_find:
        learn.lr_find(num_it=8, show_plot=False)
        assert learn.epochs_done == 0 and learn.scaler is None
    draws = [random.random(), float(np.random.rand())]
    learn.fine_tune(1, 1e-2, freeze_epochs=1)
    return {k: v.clone() for k, v in learn.model.state_dict().items()}, draws


def test_lr_find_leaves_a_seeded_fine_tune_unchanged(tmp_path):
    """lr_find restores epochs_done (the shuffle seed), the grad scaler and every RNG it consumed."""
    plain, plain_draws = _seeded_fine_tune(tmp_path, with_lr_find=False)
    after, after_draws = _seeded_fine_tune(tmp_path, with_lr_find=True)
    assert after_draws == plain_draws
    assert all(torch.equal(v, after[k]) for k, v in plain.items())


def test_atomic_save_leaves_no_temp_file_when_the_save_fails(tmp_path, monkeypatch):
    from vision_tl.train import checkpoint

    def fail(state, f):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_save({"x": 1}, tmp_path / "m.pth")
    assert list(tmp_path.iterdir()) == []
