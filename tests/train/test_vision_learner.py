"""vision_learner on real ImageDataLoaders: normalization, heads, resume after a kill, transfer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vision_tl import cnn_learner, load_learner, read_manifest, vision_learner
from vision_tl.data.batch_tfms import Normalize, imagenet_stats
from vision_tl.data.factories import ImageDataLoaders
from vision_tl.data.item_tfms import Resize
from vision_tl.data.sources import get_image_files
from vision_tl.data.synthetic import make_synthetic_folder
from vision_tl.metrics import accuracy, error_rate
from vision_tl.train.callbacks import Callback
from vision_tl.train.tracking import CheckpointCallback


def folder_dls(path, **kwargs):
    kwargs = {"valid_pct": 0.25, "seed": 0, "item_tfms": Resize(32), "bs": 8, "num_workers": 0, "device": "cpu", **kwargs}
    return ImageDataLoaders.from_folder(path, **kwargs)


def test_vision_learner_leaves_the_dls_alone_and_sizes_the_head(class_folder, tmp_path):
    dls = folder_dls(class_folder)
    before = list(dls.batch_tfms)
    learn = vision_learner(dls, "resnet10t", pretrained=False, metrics=error_rate, path=tmp_path)
    vision_learner(dls, "resnet10t", pretrained=False)
    assert dls.batch_tfms == before and not any(isinstance(t, Normalize) for t in dls.batch_tfms)
    assert learn.preprocess.mean == pytest.approx(imagenet_stats[0])
    assert learn.model_config.arch == "resnet10t" and learn.model_config.n_out == dls.c == 3
    assert learn.raw_model(dls.one_batch()[0]).shape == (8, 3)
    assert cnn_learner is vision_learner


class _ValidInputs(Callback):
    """Keeps the first validation batch exactly as the model received it."""

    def after_pred(self):
        if not self.learn.training and not hasattr(self, "x"):
            self.x = self.learn.xb[0].detach().clone()


def _model_input(learn):
    cb = _ValidInputs()
    learn.validate()
    learn.add_cb(cb)
    learn.validate()
    learn.remove_cb(cb)
    return cb.x


def test_two_learners_on_one_dls_train_and_export_with_their_own_stats(class_folder, tmp_path):
    """resnet10t (ImageNet statistics) and timm's test_resnet (0.5/0.5 in its pretrained_cfg) share one dls
    (resnet10t: the ImageNet-statistics case at a fraction of resnet18's cost on a CPU)."""
    dls = folder_dls(class_folder)
    before = list(dls.batch_tfms)
    raw = dls.valid.one_batch()[0]
    for arch, stats in (("resnet10t", imagenet_stats), ("test_resnet", ((0.5,) * 3, (0.5,) * 3))):
        learn = vision_learner(dls, arch, pretrained=False, path=tmp_path)
        learn.fit(1, 1e-4)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in stats)
        assert torch.allclose(_model_input(learn), (raw - mean) / std, atol=1e-5), arch
        m = read_manifest(learn.export(tmp_path / f"{arch}.vtl"))
        assert m["normalize"] == {"mean": pytest.approx(list(stats[0])), "std": pytest.approx(list(stats[1]))}
        mean, std = load_learner(tmp_path / f"{arch}.vtl", device="cpu").normalize
        assert (mean, std) == (pytest.approx(stats[0]), pytest.approx(stats[1])), arch
    assert dls.batch_tfms == before


def test_a_weights_file_that_carries_its_own_stats_is_used_with_them(class_folder, tmp_path):
    import timm

    f = tmp_path / "body.safetensors"
    stats = ([0.3, 0.3, 0.3], [0.2, 0.2, 0.2])
    save_file(timm.create_model("resnet10t", num_classes=0).state_dict(), str(f),
              metadata={"mean": json.dumps(stats[0]), "std": json.dumps(stats[1])})
    with pytest.warns(UserWarning, match="body.safetensors"):
        learn = vision_learner(folder_dls(class_folder), "resnet10t", weights=f, path=tmp_path)
    assert learn.preprocess.mean == pytest.approx(stats[0]) and learn.preprocess.std == pytest.approx(stats[1])
    pred = load_learner(learn.export(tmp_path / "m.vtl"), device="cpu")
    assert pred.normalize == (pytest.approx(stats[0]), pytest.approx(stats[1]))
    with pytest.warns(UserWarning, match="the mean/std given"):
        again = vision_learner(folder_dls(class_folder), "resnet10t", weights=f, mean=(0.4,) * 3, std=(0.25,) * 3,
                               path=tmp_path)
    assert again.preprocess.mean == pytest.approx((0.4,) * 3)  # the user's stats win over the file's


def test_a_users_normalize_in_the_dls_stays_theirs_and_runs_once(class_folder, tmp_path):
    dls = folder_dls(class_folder, batch_tfms=[Normalize.from_stats(*imagenet_stats)])
    with pytest.warns(UserWarning, match="not the architecture's default"):
        learn = vision_learner(dls, "test_resnet", pretrained=False, path=tmp_path)
    assert learn.preprocess.mean == pytest.approx(imagenet_stats[0])
    assert torch.allclose(_model_input(learn), dls.valid.one_batch()[0], atol=1e-6)  # normalized once, by the dls
    assert len(dls.batch_tfms) == 1
    with pytest.raises(ValueError, match="contradict"):
        vision_learner(dls, "test_resnet", pretrained=False, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_vision_learner_with_a_weights_file_starts_frozen(class_folder, tmp_path):
    import timm

    f = tmp_path / "body.safetensors"
    save_file(timm.create_model("resnet10t", num_classes=0).state_dict(), str(f))
    learn = vision_learner(folder_dls(class_folder), "resnet10t", weights=f, path=tmp_path)
    assert learn.frozen_to == learn.n_groups - 1 == 2
    assert not learn.raw_model[0].model.conv1[0].weight.requires_grad


@pytest.mark.slow
def test_fine_tune_on_a_folder_prints_an_epoch_table(class_folder, tmp_path, capsys):
    learn = vision_learner(folder_dls(class_folder), "resnet10t", pretrained=False, metrics=[accuracy, error_rate],
                           path=tmp_path)
    learn.fine_tune(1)
    out = capsys.readouterr().out
    assert "epoch" in out and "train_loss" in out and "valid_loss" in out and "error_rate" in out
    assert len(learn.recorder.values) == 1 and len(learn.recorder.values[0]) == 4


_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    from vision_tl.data.item_tfms import Resize
    from vision_tl.data.factories import ImageDataLoaders
    from vision_tl import vision_learner
    from vision_tl.train.callbacks import Callback
    from vision_tl.train.tracking import CheckpointCallback

    folder, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Kill(Callback):  # a real crash: SIGKILL in the middle of the last epoch
        def after_batch(self):
            if self.learn.training and self.learn.fit_index == 1 and self.learn.epoch == 1 and self.learn.iter == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    dls = ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, item_tfms=Resize(32), bs=8,
                                       num_workers=workers, device="cpu")
    torch.manual_seed(0)
    learn = vision_learner(dls, "resnet10t", pretrained=False, path=out)
    learn.fine_tune(2, cbs=[CheckpointCallback("ck"), Kill()])
""")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])  # worker processes must not shift the model's random stream
def test_a_killed_run_resumes_to_bit_identical_weights(class_folder, tmp_path, workers):
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    proc = subprocess.run([sys.executable, str(script), str(class_folder), str(tmp_path), str(workers)],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]  # it really was killed mid-way
    assert (tmp_path / "models" / "ck.pth").is_file()

    def learner():
        torch.manual_seed(0)
        return vision_learner(folder_dls(class_folder, num_workers=workers), "resnet10t", pretrained=False,
                              path=tmp_path)

    resumed = learner()
    resumed.fine_tune(2, cbs=[CheckpointCallback("ck")], resume="ck")
    reference = learner()
    reference.fine_tune(2)
    for k, v in reference.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    ref_opt, res_opt = reference.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    assert ref_opt.keys() == res_opt.keys()
    assert all(torch.equal(ref_opt[i]["exp_avg_sq"], res_opt[i]["exp_avg_sq"]) for i in ref_opt)
    assert reference.recorder.values == resumed.recorder.values


def test_resume_from_a_missing_checkpoint_names_the_file(class_folder, tmp_path):
    learn = vision_learner(folder_dls(class_folder), "resnet10t", pretrained=False, path=tmp_path)
    with pytest.raises(FileNotFoundError, match="nothere"):
        learn.fine_tune(1, resume="nothere")


@pytest.mark.slow
def test_transfer_from_a_pretrained_body_beats_training_from_scratch(tmp_path):
    """Pretrain on task A (4 classes), save the body, fine-tune on task B (4 other classes, 24 images)."""
    names = [f"c{i}" for i in range(8)]
    make_synthetic_folder(tmp_path / "a", classes=names, n_per_class=24, seed=5)
    make_synthetic_folder(tmp_path / "b", classes=names, n_per_class=10, seed=6)

    def dls_for(sub: str, classes: list[str]):
        files = [f for f in get_image_files(tmp_path / sub) if f.parent.name in classes]
        return ImageDataLoaders.from_lists(tmp_path / sub, files, [f.parent.name for f in files], valid_pct=0.4,
                                           seed=0, item_tfms=Resize(32), bs=8, num_workers=0, device="cpu")

    pre = vision_learner(dls_for("a", names[:4]), "resnet10t", pretrained=False, path=tmp_path)
    pre.fit_one_cycle(4, 3e-3)
    weights = Path(tmp_path / "body.safetensors")
    save_file(pre.raw_model[0].state_dict(), str(weights))  # what a user's local weights file holds

    results = {}
    for name, w in (("transfer", weights), ("scratch", None)):
        torch.manual_seed(0)
        learn = vision_learner(dls_for("b", names[4:]), "resnet10t", pretrained=w is not None, weights=w,
                               metrics=accuracy, path=tmp_path)
        learn.fine_tune(2, 3e-3)
        results[name] = learn.validate()
    assert results["transfer"][0] < results["scratch"][0]  # lower validation loss
    assert results["transfer"][1] > results["scratch"][1] + 0.2  # and clearly better accuracy


def test_get_preds_on_an_unlabelled_test_dl(class_folder, tmp_path):
    dls = folder_dls(class_folder)
    learn = vision_learner(dls, "resnet10t", pretrained=False, path=tmp_path)
    files = sorted(Path(class_folder).rglob("*.jpg"))[:5]
    probs, targs = learn.get_preds(dl=dls.test_dl(files))
    assert probs.shape == (5, 3) and targs is None
    # the validation pipeline, in file order: what predicting the files one path at a time gives
    torch.testing.assert_close(probs, torch.stack([learn.predict(f)[2] for f in files]), atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
def test_cuda_trains_with_mixed_precision_and_channels_last(class_folder, tmp_path):
    from vision_tl.train.callbacks import MixedPrecision

    learn = vision_learner(folder_dls(class_folder, device="cuda"), "resnet10t", pretrained=False, path=tmp_path)
    assert learn.device.type == "cuda" and any(isinstance(c, MixedPrecision) for c in learn.cbs)
    learn.fine_tune(1)
    assert all(torch.isfinite(torch.tensor(v)).all() for v in learn.recorder.values)
    conv = learn.raw_model[0].model.conv1[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    probs, _ = learn.get_preds()
    assert probs.dtype == torch.float32
