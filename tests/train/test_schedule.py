"""Pure functions and their use: learning-rate expansion, one-cycle, LR-finder suggestions, smoothing."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vision_tl.models.heads import create_head
from vision_tl.train.learner import TrainingLearner
from vision_tl.train.lr_find import minimum, slide, steep, suggest_lrs, valley
from vision_tl.train.schedule import (
    expand_lr,
    layer_decay_mults,
    one_cycle_lr,
    one_cycle_mom,
    smooth,
)


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
    # what fastai 2.8.12's valley/minimum/slide return for this very curve (computed with fastai once):
    # valley: the falling run is lrs[36..61] (25 steps), 36 + int(25/3) + int(25/6) = index 48
    assert s.valley == pytest.approx(lrs[48]) == pytest.approx(7.564633e-4)
    assert s.minimum == pytest.approx(1.0235310e-3)  # a tenth of the first lowest loss's LR (lrs[62])
    assert s.slide == pytest.approx(6.280292e-4)
    # the fall is linear in log(lr), so every falling step is equally steep: steep is one of them
    assert any(s.steep == pytest.approx(lr) for lr in lrs[37:62])


def test_a_suggestion_function_takes_and_returns_what_fastais_do():
    """fastai's signature: (lrs, losses, num_it) -> (lr, (lr, loss)), on tensors too; partials keep their name."""
    from functools import partial

    lrs = torch.logspace(-7, 1, 100)
    losses = torch.cat([torch.full((40,), 2.0), torch.linspace(2.0, 0.5, 40), torch.linspace(0.5, 5.0, 20)])
    for f in (minimum, steep, valley, slide):
        lr, (x, y) = f(lrs, losses, 100)
        assert isinstance(lr, float) and isinstance(x, float) and isinstance(y, float)
        i = int(torch.argmin((lrs - x).abs()))  # the point it names is a point of the curve
        assert x == pytest.approx(float(lrs[i]), rel=1e-6) and y == pytest.approx(float(losses[i]), rel=1e-6)
        assert i >= 40 and y < 2.0, f.__name__  # past the flat start, below its loss
        if f in (steep, valley):
            assert i < 80, f.__name__  # on the falling run (40-79), not on the rise
    lr, (x, _) = minimum(lrs, losses, 100)
    assert x == pytest.approx(float(lrs[79])) and lr == pytest.approx(x / 10)  # fastai: a tenth of the lowest
    assert suggest_lrs(lrs, losses, partial(slide, lr_diff=10))._fields == ("slide",)
    with pytest.raises(ValueError, match="different names"):
        suggest_lrs(lrs, losses, (valley, valley))


def test_smooth_is_the_debiased_moving_average():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([1.0, 3.0], beta=0.5) == pytest.approx([1.0, (0.25 + 1.5) / 0.75])


@pytest.fixture
def _fp16_learner(tiny_dls):
    """The helper below, its data from the ``tiny_dls`` fixture."""

    def _fp16_learner(tmp_path) -> TrainingLearner:
        body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        model = nn.Sequential(body, create_head(8, 3, lin_ftrs=[8]))  # the head's dropout draws from torch's RNG
        return TrainingLearner(tiny_dls(), model, path=tmp_path, device="cpu").to_fp16(force=True)

    return _fp16_learner


def _seeded_fine_tune(make_learner, tmp_path, with_lr_find: bool) -> tuple[dict, list]:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    learn = make_learner(tmp_path)
    if with_lr_find:
        learn.lr_find(num_it=8, show_plot=False)
        assert learn.epochs_done == 0 and learn.scaler is None
    draws = [random.random(), float(np.random.rand())]
    learn.fine_tune(1, 1e-2, freeze_epochs=1)
    return {k: v.clone() for k, v in learn.model.state_dict().items()}, draws


def test_lr_find_leaves_a_seeded_fine_tune_unchanged(tmp_path, _fp16_learner):
    """lr_find restores epochs_done (the shuffle seed), the grad scaler and every RNG it consumed."""
    plain, plain_draws = _seeded_fine_tune(_fp16_learner, tmp_path, with_lr_find=False)
    after, after_draws = _seeded_fine_tune(_fp16_learner, tmp_path, with_lr_find=True)
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
