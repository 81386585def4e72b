"""EMACallback: the average is the formula's, BatchNorm buffers included; validated and exported; resumed bit-identically."""

from __future__ import annotations

import pytest
import torch

from vision_tl import Callback, CheckpointCallback, EMACallback, Learner, accuracy
from vision_tl.train.callbacks import CancelFitException
from vision_tl.train.ema import ema_decay

from .helpers import small_dls, tiny_model


def make_learner(folder, tmp_path, cbs=()):
    torch.manual_seed(0)
    return Learner(small_dls(folder), tiny_model(), metrics=accuracy, path=tmp_path, device="cpu",
                   cbs=list(cbs), progress="silent")


def test_decay_warms_up_as_timm_then_stays_at_decay():
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.9, 1000) == 0.9 and ema_decay(0.9, 0, warmup=False) == 0.9
    with pytest.raises(ValueError, match="1.5"):
        EMACallback(decay=1.5)


def test_the_average_is_what_the_formula_gives_buffers_included(class_folder, tmp_path):
    states = []

    class Snap(Callback):  # the live state after each optimizer step (EMA has already updated from it)
        order = 50

        def after_step(self):
            states.append({k: v.detach().clone() for k, v in self.learn.raw_model.state_dict().items()})

    start = {}

    class Start(Callback):
        order = -50

        def before_fit(self):
            start.update({k: v.detach().clone() for k, v in self.learn.raw_model.state_dict().items()})

    ema = EMACallback(decay=0.9)
    learn = make_learner(class_folder, tmp_path, [ema, Snap(), Start()])
    learn.fit(2, lr=1e-2)
    assert len(states) == ema.n_updates == 12  # 27 training images, bs 4, last partial batch dropped: 6 a epoch
    want = {k: v.clone() for k, v in start.items()}
    for n, live in enumerate(states):
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in want.items():
            if v.is_floating_point():
                v.mul_(d).add_(live[k], alpha=1 - d)
            else:
                v.copy_(live[k])
    for k, v in want.items():
        assert torch.equal(ema.average[k], v), k
    bn = "0.1.running_mean"
    assert bn in want and not torch.equal(want[bn], states[-1][bn])  # BatchNorm statistics are averaged too
    assert int(ema.average["0.1.num_batches_tracked"]) == int(states[-1]["0.1.num_batches_tracked"])


def test_validation_uses_the_average_and_shows_both(class_folder, tmp_path):

    ema = EMACallback(decay=0.8)
    learn = make_learner(class_folder, tmp_path, [ema])
    learn.fit(2, lr=1e-2)
    names = learn.recorder.metric_names
    assert names[2:6] == ["valid_loss", "accuracy", "raw_valid_loss", "raw_accuracy"]
    last = learn.recorder.values[-1]
    assert ema.holds_average  # after the fit the model holds the average ...
    assert learn.validate()[0] == pytest.approx(last[1], rel=1e-6)  # ... which gave valid_loss
    assert last[1] != last[3]  # the live weights were validated too, and differ
    sd = learn.raw_model.state_dict()
    assert all(torch.equal(sd[k], ema.average[k]) for k in sd)
    ema.use_live()
    assert learn.validate()[0] == pytest.approx(last[3], rel=1e-6)


@pytest.mark.slow
def test_export_writes_the_average_unless_asked_otherwise(small_folder, tmp_path):
    from vision_tl import load_learner, read_manifest, vision_learner

    ema = EMACallback(decay=0.8)
    learn = vision_learner(small_dls(small_folder, 32), "resnet10t", pretrained=False, path=tmp_path, device="cpu",
                           cbs=[ema], progress="silent")
    learn.fit(1, lr=1e-2)
    pred = load_learner(learn.export(tmp_path / "avg.vtl"), device="cpu", backend="torch")
    assert all(torch.equal(v.cpu(), ema.average[k]) for k, v in pred.model.state_dict().items())
    assert read_manifest(tmp_path / "avg.vtl")["card"]["ema"]["weights"] == "average"
    ema.use_live()  # asked otherwise: the trained weights
    pred = load_learner(learn.export(tmp_path / "live.vtl"), device="cpu", backend="torch")
    assert not all(torch.equal(v.cpu(), ema.average[k]) for k, v in pred.model.state_dict().items())
    assert read_manifest(tmp_path / "live.vtl")["card"]["ema"]["weights"] == "live"


def test_lr_find_leaves_the_average_alone(class_folder, tmp_path):
    ema = EMACallback(decay=0.9)
    learn = make_learner(class_folder, tmp_path, [ema])
    learn.fit(1, lr=1e-2)
    before, n = {k: v.clone() for k, v in ema.average.items()}, ema.n_updates
    learn.lr_find(num_it=5, show_plot=False)
    assert ema.n_updates == n and all(torch.equal(before[k], ema.average[k]) for k in before)


@pytest.mark.slow
def test_resume_continues_the_average_bit_identically(class_folder, tmp_path):
    class StopAfterFirstEpoch(Callback):
        order = 95  # after the checkpoint was written

        def after_epoch(self):
            raise CancelFitException()

    full = EMACallback(decay=0.9)
    make_learner(class_folder, tmp_path / "a", [full]).fit(3, lr=1e-2)

    killed = make_learner(class_folder, tmp_path / "b", [EMACallback(decay=0.9), CheckpointCallback("ck")])
    killed.fit(3, lr=1e-2, cbs=StopAfterFirstEpoch())
    resumed_ema = EMACallback(decay=0.9)
    resumed = make_learner(class_folder, tmp_path / "b", [resumed_ema, CheckpointCallback("ck")])
    resumed.fit(3, lr=1e-2, resume="ck")
    assert resumed_ema.n_updates == full.n_updates == 18
    for k, v in full.average.items():
        assert torch.equal(resumed_ema.average[k], v), k
