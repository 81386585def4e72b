"""The main job: lesson 1 end to end on synthetic pets, offline, with and without pretrained weights."""

from __future__ import annotations

import pytest

from vision_tl.demo import _prepare_out, is_cat, run_demo
from vision_tl.models.hub import find_pretrained

TINY = dict(arch="resnet10t", size=32, n_images=40, bs=8)
MAX_ERROR = 0.2  # the seeded CPU run of TINY gets all 8 validation images right; guessing gets ~half wrong


def _no_cached_weights(tmp_path, monkeypatch) -> None:
    """Empty torch-hub and Hugging Face caches: whatever this machine has cached is out of sight."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def test_is_cat_follows_the_oxford_pet_naming_rule():
    assert is_cat("Abyssinian_1.jpg") and is_cat("British_Shorthair_20.jpg")
    assert not is_cat("american_bulldog_3.jpg") and not is_cat("pug_1.jpg")


def test_demo_refuses_a_folder_it_did_not_create(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("precious")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        run_demo(tmp_path, **TINY)
    assert mine.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_demo_may_rerun_into_its_own_folder(tmp_path):
    out = _prepare_out(tmp_path / "out")
    (out / "loss_curve.png").write_bytes(b"old")
    assert _prepare_out(out) == out


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        run_demo(tmp_path / "a", epochs=0)
    with pytest.raises(ValueError, match="n_images must be >= 20.*got 5"):
        run_demo(tmp_path / "b", n_images=5)


def test_offline_without_cache_answers_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _no_cached_weights(tmp_path, monkeypatch)
    import socket

    def no_network(*args, **kwargs):  # the hub would retry for ~50 s: the answer must come without it
        raise AssertionError(f"tried to connect to {args[0]!r}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert find_pretrained("resnet10t") == (False, None, "no network and no cached copy of the pretrained weights")


@pytest.mark.slow
def test_offline_demo_runs_lesson_one_end_to_end(tmp_path, monkeypatch):
    from vision_tl import ImageDataLoaders, Resize, get_image_files, load_learner

    _no_cached_weights(tmp_path, monkeypatch)
    res = run_demo(tmp_path / "out", **TINY)
    assert res["error_rate"] < MAX_ERROR  # it learns: a model that guesses is wrong on about half
    assert res["n_train"] + res["n_valid"] == 40 and res["n_valid"] == 8
    names = sorted(p.name for p in res["files"])
    assert names == ["confusion_matrix.png", "loss_curve.png", "pets_classifier.vtl", "top_losses.png"]
    assert all(p.stat().st_size > 0 for p in res["files"])
    for p in res["files"]:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictor = load_learner(tmp_path / "out" / "pets_classifier.vtl")
    assert predictor.vocab == ["False", "True"]
    # the reported error rate is the exported model's on the demo's validation split (seed 42, 20 %)
    path = res["data"]
    valid = ImageDataLoaders.from_name_func(path, get_image_files(path / "images"), valid_pct=0.2, seed=42,
                                            label_func=is_cat, item_tfms=Resize(32), bs=8, num_workers=0).valid_ds
    guesses = predictor.decode(predictor.predict_batch(valid.items, num_workers=0, progress=False))
    wrong = sum(g != str(is_cat(f.name)) for g, f in zip(guesses, valid.items))
    assert res["error_rate"] == pytest.approx(wrong / len(valid.items))
    assert len(res["predictions"]) == 4
    assert {p["truth"] for p in res["predictions"]} == {"cat", "dog"}
    assert res["pretrained"] is False  # no cached weights and no network: random initialisation


@pytest.mark.slow
def test_demo_runs_one_validation_pass_after_training(tmp_path, monkeypatch):
    """The error rate and the interpretation plots come from the same pass over the validation set."""
    from vision_tl.train.learner import TrainingLearner

    passes, run_validation, fine_tune = [], TrainingLearner._run_validation, TrainingLearner.fine_tune

    def counting(self, dl):
        out = run_validation(self, dl)
        passes.append(self.val_results)  # [valid_loss, error_rate] of this pass
        return out

    def fine_tune_then_reset(self, *args, **kwargs):
        fine_tune(self, *args, **kwargs)
        passes.clear()

    monkeypatch.setattr(TrainingLearner, "_run_validation", counting)
    monkeypatch.setattr(TrainingLearner, "fine_tune", fine_tune_then_reset)
    _no_cached_weights(tmp_path, monkeypatch)
    res = run_demo(tmp_path / "out", **TINY)
    assert len(passes) == 1
    assert res["error_rate"] == pytest.approx(passes[0][1])  # the figure the demo reports is that pass's


@pytest.mark.slow
def test_demo_uses_pretrained_weights_when_a_cached_copy_exists(tmp_path, monkeypatch, capsys):
    import timm
    import torch
    from timm.models import get_pretrained_cfg

    # a locally written checkpoint where torch.hub would have cached the real one
    url = get_pretrained_cfg("resnet10t").url
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), ckpt)
    _no_cached_weights(tmp_path, monkeypatch)
    assert find_pretrained("resnet10t")[:2] == (True, ckpt)
    res = run_demo(tmp_path / "out", epochs=1, **TINY)
    assert res["pretrained"] is True
    assert "using ImageNet-pretrained resnet10t" in capsys.readouterr().out


@pytest.mark.slow
def test_real_mode_runs_fastai_recipe_on_a_cached_pets_folder(tmp_path, monkeypatch):
    """``--real`` with the data set and the resnet34 checkpoint already cached: no network needed."""
    import timm
    import torch
    from timm.models import get_pretrained_cfg

    from vision_tl.data.synthetic import make_synthetic_pets

    monkeypatch.setenv("VISION_TL_HOME", str(tmp_path / "home"))
    make_synthetic_pets(tmp_path / "home" / "data" / "oxford-iiit-pet", n_images=30, seed=5, n_breeds=2)
    url = get_pretrained_cfg("resnet34.tv_in1k").url
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    res = run_demo(tmp_path / "out", real=True, size=32, bs=8)
    assert res["pretrained"] is True and res["arch"] == "resnet34.tv_in1k"
    assert res["data"] == tmp_path / "home" / "data" / "oxford-iiit-pet"
    assert res["n_valid"] == 6  # valid_pct=0.2 of 30


def test_real_mode_without_pretrained_weights_stops_with_a_clear_error(tmp_path, monkeypatch):
    from vision_tl.data.synthetic import make_synthetic_pets

    monkeypatch.setenv("VISION_TL_HOME", str(tmp_path / "home"))
    _no_cached_weights(tmp_path, monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_synthetic_pets(tmp_path / "home" / "data" / "oxford-iiit-pet", n_images=20, seed=5, n_breeds=2)
    with pytest.raises(RuntimeError, match="--real needs ImageNet-pretrained resnet34"):
        run_demo(tmp_path / "out", real=True, size=32, bs=8)
