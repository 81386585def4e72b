"""fastai's inference vocabulary: predict's tensor index, a loaded model's dls.vocab, plot keywords."""

from __future__ import annotations

import pytest
import torch

from vision_tl import ImageDataLoaders, Resize, vision_learner
from vision_tl.inference.interpret import ClassificationInterpretation
from vision_tl.inference.load import load_learner


@pytest.fixture(scope="module")
def learn(class_folder, tmp_path_factory):
    """resnet10t (random init) at 32 px: nothing here needs a trained model."""
    dls = ImageDataLoaders.from_path_func(
        class_folder, sorted(class_folder.rglob("*.jpg")), lambda p: p.parent.name, valid_pct=0.25, seed=0,
        item_tfms=Resize(32), bs=8, num_workers=0, device="cpu",
    )
    return vision_learner(dls, "resnet10t", pretrained=False, path=tmp_path_factory.mktemp("vocab"))


def test_predict_returns_the_index_as_a_tensor_like_fastai(learn, class_folder):
    f = sorted(class_folder.rglob("*.jpg"))[0]
    label, idx, probs = learn.predict(f)
    assert isinstance(idx, torch.Tensor) and idx.ndim == 0 and idx.dtype == torch.long
    assert label == learn.dls.vocab[idx] and int(idx) == int(probs.argmax())
    assert float(probs[idx]) == pytest.approx(float(probs.max()))


def test_a_loaded_model_exposes_dls_vocab_like_fastai(learn, tmp_path, class_folder):
    loaded = load_learner(learn.export(tmp_path / "m.vtl"), device="cpu")
    assert list(loaded.dls.vocab) == list(learn.dls.vocab) and loaded.dls.c == learn.dls.c
    label, idx, _ = loaded.predict(sorted(class_folder.rglob("*.jpg"))[0])
    assert loaded.dls.vocab[idx] == label


def test_plot_keywords_match_fastai(learn):
    interp = ClassificationInterpretation.from_learner(learn)
    fig = interp.plot_confusion_matrix(figsize=(3, 3), dpi=50, title="cm", norm_dec=1, normalize=True, return_fig=True)
    assert fig.get_dpi() == 50 and tuple(fig.get_size_inches()) == (3, 3)
    assert fig.axes[0].get_title() == "cm"
    fig = interp.plot_top_losses(4, nrows=1, figsize=(8, 2), return_fig=True)
    assert len(fig.axes) == 4 and tuple(fig.get_size_inches()) == (8, 2)
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (1, 4)
    fig = learn.show_results(max_n=4, nrows=2, figsize=(5, 5), return_fig=True)
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 2)
    assert tuple(fig.get_size_inches()) == (5, 5)
