"""Issue 22, item 2: a batch size from the data when none is given, a warning for epochs of a few steps,
and an lr_find that stops once the loss has clearly diverged and says what it is doing."""

from __future__ import annotations

import math
import warnings

import pytest

from vision_tl import ImageDataLoaders, Resize, auto_bs, vision_learner
from vision_tl.cli import main
from vision_tl.train.callbacks import CancelFitException
from vision_tl.train.lr_find import _Finder


@pytest.mark.parametrize(("n", "bs"), [(10, 4), (72, 8), (200, 16), (400, 32), (600, 64), (100_000, 64)])
def test_auto_bs_gives_enough_steps_up_to_64(n, bs):
    assert auto_bs(n) == bs


def test_factories_pick_the_batch_size_from_the_data_and_keep_an_explicit_one(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), num_workers=0)
    assert len(dls.train_ds) == 27 and dls.bs == 4 and len(dls.train) >= 6  # bs=64 would be 0 full batches
    assert ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=64,
                                        num_workers=0).bs == 64


def test_fit_warns_when_an_epoch_is_a_few_steps(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=16,
                                       num_workers=0)
    learn = vision_learner(dls, "resnet10t", pretrained=False)
    with pytest.warns(UserWarning, match=r"an epoch is 1 optimizer step\(s\) \(27 training images, batch size 16\)"):
        learn.fit(0)
    learn.dls = dls.new(bs=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.fit(0)  # 6 steps: nothing to say


class _Learn:  # what the finder reads of a Learner
    training = True

    def __init__(self):
        self.loss = 0.0

    def group_lrs(self):
        return [1e-3]


def _steps_until_stop(losses):
    finder, learn = _Finder(num_it=len(losses) + 10, stop_div=True), _Learn()
    finder.learn = learn
    finder.before_fit()
    for i, loss in enumerate(losses):
        learn.loss = loss
        try:
            finder.after_loss()
        except CancelFitException:
            return i + 1
    return None


def test_lr_find_stops_once_the_loss_is_back_above_where_it_started():
    # a pretrained model's loss falls from 0.7 to ~0.2, then the model collapses to chance (0.69) and stays
    # there: under 4x its best, so fastai's rule alone ran every iteration
    fall = [0.7 - 0.55 * i / 60 for i in range(60)]
    losses = [0.7] * 5 + fall + [0.15] * 20 + [0.69] * 200
    stop = _steps_until_stop(losses)
    assert stop is not None and 85 < stop < 200
    assert _steps_until_stop([0.7] * 5 + [0.6] * 100) is None  # a flat curve is not a divergence
    assert _steps_until_stop([0.7] * 5 + [0.3] * 20 + [math.inf]) == 26


@pytest.mark.slow
def test_lr_find_command_says_what_it_does(class_folder, tmp_path, capsys):
    code = main(["lr-find", str(class_folder), "--arch", "resnet10t", "--no-pretrained", "--size", "32",
                 "--num-workers", "0", "--num-it", "5", "--plot", str(tmp_path / "lr.png")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "up to 5 mini-batches of 4 images" in out.out and "stopping early once the loss diverges" in out.out
