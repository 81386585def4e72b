"""The loop's override points (train_step, eval_step), validation gathering, progress and warnings."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from vision_tl.metrics import accuracy  # noqa: E402
from vision_tl.models.heads import create_head  # noqa: E402
from vision_tl.train.callbacks import Callback  # noqa: E402
from vision_tl.train.learner import TrainingLearner  # noqa: E402


def tiny_model(c: int = 3) -> nn.Sequential:
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    return nn.Sequential(body, create_head(8, c, lin_ftrs=[16]))


def test_a_learner_subclass_overriding_train_step_trains_with_it(tmp_path, tiny_dls):
    class L1Learner(TrainingLearner):
        steps = 0

        def train_step(self):
            self.steps += 1
            self.pred = self.model(*self.xb)
            penalty = sum(p.abs().sum() for p in self.model.parameters())
            self.loss_grad = self.loss_func(self.pred, *self.yb) + 1e-5 * penalty
            self.loss = self.loss_grad.detach()
            self.backward()
            self.step()
            self.opt.zero_grad()

    learn = L1Learner(tiny_dls(), tiny_model(), path=tmp_path, device="cpu", metrics=accuracy)
    learn.fit_one_cycle(4, 2e-2)
    assert learn.steps == 4 * len(learn.dls.train)
    assert len(learn.recorder.losses) == learn.steps  # the Recorder saw every custom step's loss
    first, last = learn.recorder.values[0], learn.recorder.values[-1]
    assert last[1] < first[1] and last[2] >= 0.75  # valid loss falls; accuracy well above 1/3


def test_eval_step_is_what_validate_and_get_preds_run(tmp_path, tiny_dls):
    class FlipAveraged(TrainingLearner):
        def eval_step(self):
            (x,) = self.xb
            self.pred = (self.model(x) + self.model(x.flip(-1))) / 2
            if self.yb:
                self.loss = self.loss_func(self.pred, *self.yb)

    learn = FlipAveraged(tiny_dls(), tiny_model(), path=tmp_path, device="cpu", metrics=accuracy)
    probs, targs = learn.get_preds()
    model, x = learn.model.eval(), learn.dls.valid.x
    with torch.no_grad():
        expect = torch.softmax((model(x) + model(x.flip(-1))) / 2, dim=-1)
    torch.testing.assert_close(probs, expect)
    loss, _ = learn.validate()
    assert loss == pytest.approx(float(nn.functional.cross_entropy(expect.log(), targs)), rel=1e-5)


def test_validation_is_gathered_by_the_callback_in_the_gather_preds_place(tmp_path, tiny_dls):
    from vision_tl.train.gather import GatherPreds

    class FirstHalf(GatherPreds):  # a stand-in, as DistributedTrainer puts its all-gather version there
        def combine(self):
            preds, targs, inputs, loss = super().combine()
            return preds[:6], targs[:6], inputs, loss

    learn = TrainingLearner(tiny_dls(), tiny_model(), path=tmp_path, device="cpu", metrics=accuracy)
    assert isinstance(learn.gather_preds, GatherPreds) and learn.gather_preds in learn.cbs
    probs, targs = learn.get_preds()
    assert probs.shape == (12, 3) and targs.tolist() == learn.dls.valid.y.tolist()
    learn.remove_cb(GatherPreds).add_cb(FirstHalf())
    assert isinstance(learn.gather_preds, FirstHalf)
    probs, targs = learn.get_preds()
    assert probs.shape == (6, 3) and targs.tolist() == learn.dls.valid.y[:6].tolist()


def test_float_multi_label_targets_are_gathered_as_they_are(tmp_path, tiny_dls):
    dls = tiny_dls()
    for dl in (dls.train, dls.valid):
        dl.y = nn.functional.one_hot(dl.y, 3).float()
    learn = TrainingLearner(dls, tiny_model(), loss_func=nn.BCEWithLogitsLoss(), path=tmp_path, device="cpu")
    learn.fit(1)
    (loss,) = learn.validate()
    probs, targs = learn.get_preds(act=torch.sigmoid)
    assert targs.dtype == torch.float32 and targs.shape == (12, 3)
    logits = torch.logit(probs.double()).float()
    assert loss == pytest.approx(float(nn.functional.binary_cross_entropy_with_logits(logits, targs)), rel=1e-4)


def test_the_live_loss_in_the_bar_is_refreshed_after_every_batch(tmp_path, tiny_dls):
    shown = []

    class Probe(Callback):
        order = 61  # right after the ProgressCallback

        def after_batch(self):
            if self.learn.training:
                shown.append((self.learn.progress.bar.postfix, f"loss {self.learn.recorder.smooth_loss:.4f}"))

    learn = TrainingLearner(tiny_dls(n=40), tiny_model(), path=tmp_path, device="cpu")  # 4 training batches
    learn.fit(2, cbs=Probe())
    assert len(shown) == 8 and all(bar == want for bar, want in shown)


def test_lr_find_shows_one_bar_counting_iterations_not_epochs(tmp_path, capsys, tiny_dls):
    learn = TrainingLearner(tiny_dls(n=40), tiny_model(), path=tmp_path, device="cpu")  # 4 batches an epoch
    learn.lr_find(num_it=12, show_plot=False)
    err = capsys.readouterr().err
    assert "epoch" not in err and "valid" not in err
    assert re.search(r"lr_find:.*\b12/12\b", err) or re.search(r"lr_find:.*\b1[01]/12\b", err)
    assert learn.progress.show_table  # the table is back on for the next fit


@pytest.mark.slow
def test_assigning_new_dataloaders_keeps_fit_validate_and_get_preds_working(class_folder, tmp_path):
    """Progressive resizing: another size and batch size, made on another device, then assigned."""
    from vision_tl.data.factories import ImageDataLoaders
    from vision_tl.data.item_tfms import Resize

    def dls(size, bs, device):
        return ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(size), bs=bs,
                                            num_workers=0, device=device)

    learn = TrainingLearner(dls(32, 8, "cpu"), tiny_model(), metrics=accuracy, device="cpu", path=tmp_path)
    learn.fit(1)
    bigger = dls(48, 4, "meta")  # as a dls made for CUDA by default, for a learner put on the CPU
    learn.dls = bigger
    assert bigger.train.device == bigger.valid.device == torch.device("cpu")
    seen = []

    class Sizes(Callback):
        def before_batch(self):
            seen.append(tuple(self.learn.xb[0].shape))

    learn.fine_tune(1, cbs=Sizes())
    assert seen and all(s[0] <= 4 and s[2:] == (48, 48) for s in seen)
    loss, acc = learn.validate()
    probs, targs = learn.get_preds()
    assert probs.shape == (len(bigger.valid_ds), 3) and len(targs) == len(bigger.valid_ds)
    assert float(accuracy(probs, targs)) == pytest.approx(acc)


@pytest.mark.slow
def test_a_warning_during_fit_prints_above_the_bar_at_the_users_fit_call(class_folder, tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(f"""\
        import warnings
        from torch import nn
        from vision_tl import ImageDataLoaders, Learner, Resize

        before = warnings.showwarning
        dls = ImageDataLoaders.from_folder({str(class_folder)!r}, valid_pct=0.25, seed=0, item_tfms=Resize(32),
                                           bs=4, num_workers=0, device="cpu")
        dls.train_ds.items[0] = {str(tmp_path / "broken.jpg")!r}
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        learn = Learner(dls, model, device="cpu")
        learn.fit(1)
        print("hook left behind:", warnings.showwarning is not before)
        """))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln.split("\r")[-1] for ln in r.stderr.splitlines() if "skipping bad image" in ln]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{script}:11: UserWarning: skipping bad image"), r.stderr  # not torch's fetch.py
    assert "broken.jpg" in lines[0] and "fetch.py" not in r.stderr
    assert "hook left behind: False" in r.stdout
