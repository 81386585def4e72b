"""ImageDataLoaders: every factory, the lesson-1 call, shared batch tfms, seeding, and bad input."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from vision_tl.data.batch_tfms import Normalize, aug_transforms, imagenet_stats
from vision_tl.data.dataloaders import DataLoaders
from vision_tl.data.factories import ImageDataLoaders
from vision_tl.data.images import ImageError
from vision_tl.data.item_tfms import RandomResizedCrop, Resize
from vision_tl.data.sources import LabelError, get_image_files
from vision_tl.data.tfmd_dl import TfmdDL

FAST = {"num_workers": 0, "bs": 8}


def is_cat(f: str) -> bool:
    return f[0].isupper()


def _all(dl: TfmdDL) -> list[tuple[torch.Tensor, ...]]:
    return list(dl)


def test_lesson_one_call_works_as_written_with_a_lambda(pets_folder):
    path = pets_folder / "images"
    dls = ImageDataLoaders.from_name_func(
        path, get_image_files(path), valid_pct=0.2, seed=42, label_func=lambda f: f[0].isupper(),
        item_tfms=Resize(32), **FAST,
    )
    assert isinstance(dls, DataLoaders)
    assert dls.vocab == ["False", "True"] and dls.c == 2
    assert len(dls.train_ds) + len(dls.valid_ds) == 48 and len(dls.valid_ds) == 9
    xb, yb = dls.one_batch()
    assert xb.dtype == torch.float32 and xb.shape == (8, 3, 32, 32) and 0 <= xb.min() and xb.max() <= 1
    assert yb.dtype == torch.int64 and xb.device == dls.device == yb.device
    for item, y in zip(dls.train_ds.items, dls.train_ds.labels):  # labels follow the rule
        assert dls.vocab[y] == str(is_cat(item.name))


def test_seeded_split_is_stable_and_unseeded_split_varies(pets_folder):
    files = get_image_files(pets_folder)

    def valid_names(seed):
        dls = ImageDataLoaders.from_name_func(pets_folder, files, is_cat, seed=seed, item_tfms=Resize(16), **FAST)
        return [p.name for p in dls.valid_ds.items]

    assert valid_names(42) == valid_names(42)
    assert valid_names(42) != valid_names(43)
    assert valid_names(None) != valid_names(None) or valid_names(None) != valid_names(None)


def test_from_folder_with_train_and_valid_folders(train_valid_folder):
    dls = ImageDataLoaders.from_folder(train_valid_folder, item_tfms=Resize(24), **FAST)
    assert dls.vocab == ["circle", "square", "stripes"]
    assert len(dls.train_ds) == len(dls.valid_ds) == 24
    assert all(p.parent.parent.name == "valid" for p in dls.valid_ds.items)
    batches = _all(dls.valid)
    assert len(batches) == len(dls.valid) == 3 and sum(len(b[0]) for b in batches) == 24


def test_from_folder_class_layout_needs_valid_pct(class_folder):
    with pytest.raises(FileNotFoundError, match="valid_pct=0.2"):
        ImageDataLoaders.from_folder(class_folder, item_tfms=Resize(24), **FAST)
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(24), **FAST)
    assert dls.vocab == ["circle", "square", "stripes"] and len(dls.valid_ds) == 9


def test_regex_path_func_and_list_factories_agree(pets_folder):
    files = get_image_files(pets_folder)
    kw = dict(seed=1, item_tfms=Resize(16), **FAST)
    by_re = ImageDataLoaders.from_name_re(pets_folder, files, r"^(.+)_\d+\.jpg$", **kw)
    by_path_re = ImageDataLoaders.from_path_re(pets_folder, files, r"/([^/]+)_\d+\.jpg$", **kw)
    by_func = ImageDataLoaders.from_path_func(pets_folder, files, lambda p: p.name.rsplit("_", 1)[0], **kw)
    by_lists = ImageDataLoaders.from_lists(pets_folder, files, [f.name.rsplit("_", 1)[0] for f in files], **kw)
    assert by_re.vocab == by_path_re.vocab == by_func.vocab == by_lists.vocab
    assert len(by_re.vocab) == 6
    assert by_re.valid_ds.items == by_lists.valid_ds.items and by_re.valid_ds.labels == by_lists.valid_ds.labels


def test_from_df_and_from_csv(class_folder, tmp_path):
    files = get_image_files(class_folder)
    df = pd.DataFrame({"name": [f.relative_to(class_folder).as_posix() for f in files],
                       "label": [f.parent.name for f in files],
                       "is_valid": [i % 4 == 0 for i in range(len(files))]})
    dls = ImageDataLoaders.from_df(df, class_folder, fn_col="name", label_col="label", valid_col="is_valid",
                                   item_tfms=Resize(16), **FAST)
    assert len(dls.valid_ds) == 9 and dls.c == 3
    df.to_csv(class_folder / "labels.csv", index=False)
    try:
        dls2 = ImageDataLoaders.from_csv(class_folder, "labels.csv", valid_col=2, item_tfms=Resize(16), **FAST)
        assert dls2.valid_ds.items == dls.valid_ds.items
        with pytest.raises(ValueError, match=r"label_col='breed' is not a column.*\['name', 'label', 'is_valid'\]"):
            ImageDataLoaders.from_csv(class_folder, label_col="breed", item_tfms=Resize(16), **FAST)
        with pytest.raises(ValueError, match="fn_col=7 is out of range"):
            ImageDataLoaders.from_csv(class_folder, fn_col=7, item_tfms=Resize(16), **FAST)
    finally:
        (class_folder / "labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        ImageDataLoaders.from_csv(class_folder, "nothere.csv")
    bad = df.copy()
    bad.loc[3, "name"] = "circle/missing.jpg"
    with pytest.raises(FileNotFoundError, match="circle/missing.jpg"):
        ImageDataLoaders.from_df(bad, class_folder, item_tfms=Resize(16), **FAST)


def test_batch_tfms_list_is_shared_and_read_at_iteration_time(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), **FAST)
    assert dls.batch_tfms is dls.train.batch_tfms is dls.valid.batch_tfms
    before = next(iter(dls.valid))[0]
    dls.batch_tfms.append(Normalize.from_stats(*imagenet_stats))  # what the learner does
    after = next(iter(dls.valid))[0]
    test = next(iter(dls.test_dl(dls.valid_ds.items)))[0]
    assert before.min() >= 0 and after.min() < 0
    assert torch.allclose(after, test)


def test_test_dl_unlabelled_and_labelled(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), **FAST)
    items = get_image_files(class_folder)[:5]
    batches = list(dls.test_dl(items, bs=2))
    assert [len(b) for b in batches] == [1, 1, 1] and sum(len(b[0]) for b in batches) == 5
    (xb, yb), = list(dls.test_dl(items, with_labels=True))
    assert [dls.vocab[i] for i in yb] == [p.parent.name for p in items]


def test_seeded_runs_are_reproducible_and_epochs_differ(class_folder):
    def make():
        return ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=3, item_tfms=RandomResizedCrop(24),
                                            batch_tfms=aug_transforms(), **FAST)

    a, b = make(), make()
    ea0, eb0 = _all(a.train), _all(b.train)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(ea0, eb0))
    ea1 = _all(a.train)  # the next epoch: new order, new crops
    assert not torch.equal(ea0[0][0], ea1[0][0])
    a.train.set_epoch(0)
    assert torch.equal(_all(a.train)[0][0], ea0[0][0])


def test_workers_give_the_same_batches_as_the_main_process(class_folder):
    def make(n):
        return ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=3, item_tfms=RandomResizedCrop(24),
                                            batch_tfms=aug_transforms(), bs=8, num_workers=n, device="cpu")

    # on a CPU device the workers also run the batch transforms: same seeds, same result
    with_workers, without = _all(make(2).train), _all(make(0).train)
    assert len(with_workers) == len(without) == 3
    assert all(torch.allclose(x[0], y[0], atol=1e-6) and torch.equal(x[1], y[1]) for x, y in zip(with_workers, without))
    dls = make(1)
    assert next(iter(dls.valid))[0].min() >= 0  # workers started
    dls.batch_tfms.append(Normalize.from_stats(*imagenet_stats))  # appended later: the workers see it
    assert next(iter(dls.valid))[0].min() < 0


def test_sampler_can_be_replaced(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), **FAST)
    dls.train.sampler = [0, 1, 2]
    (xb, yb), = _all(dls.train)
    assert len(xb) == 3 and yb.tolist() == dls.train_ds.labels[:3]


def test_drop_last_on_train_only_when_there_is_more_than_one_batch(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), **FAST)
    assert len(dls.train_ds) == 27 and len(dls.train) == 3 and dls.train.drop_last
    assert len(dls.valid) == 2 and not dls.valid.drop_last
    big = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=64, num_workers=0)
    assert len(big.train) == 1


def test_images_of_different_sizes_need_an_item_transform(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, **FAST)
    with pytest.raises(ValueError, match=r"item_tfms=Resize\(size\)"):
        next(iter(dls.train))


# -- bad input -------------------------------------------------------------------------------------
@pytest.fixture
def folder_copy(class_folder, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(class_folder, dst)
    return dst


def test_bad_image_during_training_is_skipped_with_a_warning_naming_it(folder_copy):
    def make(**kw):
        return ImageDataLoaders.from_folder(folder_copy, valid_pct=0.25, seed=0, item_tfms=Resize(16), **{**FAST, **kw})

    bad = make().train_ds.items[0]  # the split depends on the names only: this file stays in training
    bad.write_bytes(b"")
    dls = make()
    with pytest.warns(UserWarning, match=bad.name):
        n = sum(len(xb) for xb, _ in dls.train)
    assert n == 24  # train drops its last partial batch; nothing else lost
    in_worker = make(bs=8, num_workers=1)  # the warning is printed by the worker
    assert sum(len(xb) for xb, _ in in_worker.train) == n
    strict = make(on_bad_image="raise")
    with pytest.raises(ImageError, match=bad.name):
        _all(strict.train)
    strict.train.num_workers = 1
    with pytest.raises(ImageError, match=bad.name):  # re-raised from the worker, same type
        _all(strict.train)
    with pytest.raises(ValueError, match="on_bad_image must be one of .* got 'ignore'"):
        make(on_bad_image="ignore")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_bad_image_outside_training_stops_instead_of_shifting_results(folder_copy, num_workers):
    # a substitute in validation counts one image twice; in test_dl it shifts predictions onto other files
    dls = ImageDataLoaders.from_folder(folder_copy, valid_pct=0.25, seed=0, item_tfms=Resize(16), **FAST)
    bad = dls.valid_ds.items[2]
    bad.write_bytes(b"")
    dls.valid.num_workers = num_workers
    with pytest.raises(ImageError, match=f"{bad.name}.*verify_images"):
        _all(dls.valid)
    test = dls.test_dl(dls.valid_ds.items, num_workers=num_workers)
    with pytest.raises(ImageError, match=bad.name):
        _all(test)


def test_empty_folder_one_class_and_empty_class(tmp_path, class_folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files found in .*empty"):
        ImageDataLoaders.from_folder(tmp_path / "empty", valid_pct=0.2, **FAST)
    one = tmp_path / "one"
    shutil.copytree(class_folder / "circle", one / "circle")
    with pytest.raises(ValueError, match=r"only one class \['circle'\]"):
        ImageDataLoaders.from_folder(one, valid_pct=0.2, **FAST)
    shutil.copytree(class_folder / "square", one / "square")
    (one / "triangle").mkdir()
    with pytest.warns(UserWarning, match="triangle.*has no images"):
        dls = ImageDataLoaders.from_folder(one, valid_pct=0.2, **FAST)
    assert dls.vocab == ["circle", "square"]


def test_failing_label_function_names_the_file(pets_folder):
    files = get_image_files(pets_folder)

    def label(name):
        return {"Abyssinian": "cat"}[name.split("_")[0]]

    with pytest.raises(LabelError, match=r"cannot label .*images/\w+_\d+\.jpg: .*label raised KeyError"):
        ImageDataLoaders.from_name_func(pets_folder, files, label, **FAST)
    with pytest.raises(LabelError, match="does not match"):
        ImageDataLoaders.from_name_re(pets_folder, files, r"^(\d+)\.png$", **FAST)


@pytest.mark.parametrize("pct", [1.0, 2, -0.5])
def test_valid_pct_out_of_range(class_folder, pct):
    with pytest.raises(ValueError, match=f"valid_pct must be a number in \\[0, 1\\), got {pct}"):
        ImageDataLoaders.from_folder(class_folder, valid_pct=pct, **FAST)


def test_bad_arguments_are_rejected_by_name(class_folder):
    with pytest.raises(TypeError, match="batch_size"):
        ImageDataLoaders.from_folder(class_folder, valid_pct=0.2, batch_size=8)
    with pytest.raises(ValueError, match="bs must be a positive int, got 0"):
        ImageDataLoaders.from_folder(class_folder, valid_pct=0.2, bs=0)
    with pytest.raises(ValueError, match="device must be a torch device .* got 'gpu0'"):
        ImageDataLoaders.from_folder(class_folder, valid_pct=0.2, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ImageDataLoaders.from_folder(class_folder, valid_pct=0.2, device="cuda")
    with pytest.raises(TypeError, match="item_tfms must be"):
        ImageDataLoaders.from_folder(class_folder, valid_pct=0.2, item_tfms=224)


def test_unicode_and_mixed_mode_files(tmp_path):
    for cls, mode in [("chat_été", "RGBA"), ("犬", "L"), ("cmyk", "CMYK")]:
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new(mode, (20 + i, 30)).save(tmp_path / cls / f"ïmg {i}.{'png' if mode != 'CMYK' else 'jpg'}")
    dls = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.2, seed=0, item_tfms=Resize(16), **FAST)
    assert dls.vocab == ["chat_été", "cmyk", "犬"]
    assert sum(len(b[0]) for b in dls.valid) == len(dls.valid_ds)


# -- show_batch and summary ------------------------------------------------------------------------
def test_show_batch_draws_labelled_images(class_folder):
    import matplotlib

    matplotlib.use("Agg")
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16),
                                       batch_tfms=[Normalize.from_stats(*imagenet_stats)], **FAST)
    assert dls.show_batch(max_n=2) is None  # a notebook shows the grid once, not twice
    fig = dls.show_batch(max_n=4, return_fig=True)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4 and set(titles) <= set(dls.vocab)
    shown = fig.axes[0].images[0].get_array()
    assert 0 <= np.min(shown) and np.max(shown) <= 1  # un-normalized for display
    import matplotlib.pyplot as plt

    plt.close("all")


def test_summary_walks_the_pipeline_and_says_where_it_breaks(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16),
                                       batch_tfms=aug_transforms(), **FAST)
    assert dls.summary() is None
    text = dls.summary(print_it=False)
    assert "OK" in text and "(4, 3, 16, 16)" in text and "AffineWarp" in text
    broken = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, **FAST)  # no Resize
    text = broken.summary(print_it=False)
    assert "FAILED at collating a batch" in text and "Resize" in text


def test_no_warnings_on_a_clean_pass(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16),
                                       batch_tfms=aug_transforms(), **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _all(dls.train), _all(dls.valid)


def test_relative_fnames_resolve_against_path(class_folder):
    names = [Path(p.parent.name) / p.name for p in get_image_files(class_folder)]
    dls = ImageDataLoaders.from_lists(class_folder, names, [n.parent.name for n in names], seed=0,
                                      item_tfms=Resize(16), **FAST)
    assert all(p.is_file() for p in dls.train_ds.items)


def test_state_dict_resumes_the_same_epoch(class_folder):
    def make():
        return ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=5, item_tfms=RandomResizedCrop(16),
                                            batch_tfms=aug_transforms(), **FAST)

    a = make()
    _all(a.train)
    state = a.train.state_dict()
    epoch1 = _all(a.train)
    b = make()
    b.train.load_state_dict(state)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(epoch1, _all(b.train)))


def test_changing_item_tfms_after_a_pass_takes_effect_with_workers(class_folder):
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=8, num_workers=1)
    assert next(iter(dls.valid))[0].shape[-1] == 16
    assert dls.item_tfms is dls.train_ds.item_tfms is dls.valid_ds.item_tfms
    dls.item_tfms[0] = Resize(24)  # progressive resizing
    assert next(iter(dls.valid))[0].shape[-1] == 24
    assert next(iter(dls.test_dl(dls.valid_ds.items[:2])))[0].shape[-1] == 24


def test_datasets_pickle_without_the_label_function(pets_folder):
    """Worker processes started with 'spawn' (macOS, Windows) receive the dataset pickled."""
    import pickle

    dls = ImageDataLoaders.from_name_func(pets_folder, get_image_files(pets_folder), lambda f: f[0].isupper(),
                                          seed=0, item_tfms=RandomResizedCrop(16), **FAST)
    ds = pickle.loads(pickle.dumps(dls.train_ds))
    assert np.array_equal(ds[(0, (1, 2, 3))][0], dls.train_ds[(0, (1, 2, 3))][0])
    assert ds.labels == dls.train_ds.labels


def test_files_outside_the_split_and_an_empty_valid_set_are_reported(tmp_path, train_valid_folder):
    root = tmp_path / "tv"
    shutil.copytree(train_valid_folder, root)
    deep = root / "train" / "circle" / "extra"
    deep.mkdir()
    shutil.copy(root / "train" / "circle" / "circle_0.jpg", deep / "x.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dls = ImageDataLoaders.from_folder(root, item_tfms=Resize(16), **FAST)
    assert [str(w.message) for w in caught if "neither" in str(w.message)][0].startswith("1 of 49 files")
    assert len(caught) == 1 and "extra/x.jpg" in str(caught[0].message)
    assert dls.vocab == ["circle", "square", "stripes"]
    with pytest.warns(UserWarning, match="validation set is empty"):
        ImageDataLoaders.from_folder(root, valid_pct=0.0, item_tfms=Resize(16), **FAST)


@pytest.mark.gpu
def test_cuda_batches_match_the_cpu_pipeline(class_folder):
    def make(device):
        return ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=3, item_tfms=RandomResizedCrop(24),
                                            batch_tfms=aug_transforms(), bs=8, num_workers=1, device=device)

    gpu, cpu = _all(make("cuda").train), _all(make("cpu").train)
    assert gpu[0][0].device.type == "cuda" and gpu[0][1].device.type == "cuda"
    assert make("cuda").train._torch_loader().pin_memory
    for (xg, yg), (xc, yc) in zip(gpu, cpu):
        assert torch.equal(yg.cpu(), yc)
        assert (xg.cpu() - xc).abs().mean() < 1e-3  # same seeds; float kernels differ slightly


def test_dataloaders_and_learner_share_one_default_device_preferring_mps_over_cpu(monkeypatch):
    from vision_tl.data import tfmd_dl
    from vision_tl.train import learner

    assert learner.default_device is tfmd_dl.default_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert tfmd_dl.default_device() == torch.device("mps")


def test_the_worker_finalizer_leaves_workers_alone_outside_their_parent():
    """A process forked after a loader (another loader's worker) inherits its finalizer: there the workers
    are not its children, and asking them anything fails ("can only test a child process")."""
    import os

    from vision_tl.data.tfmd_dl import _stop_workers

    class NotMyChild:
        def is_alive(self):
            raise AssertionError("can only test a child process")

        def terminate(self):
            raise AssertionError("terminated from the wrong process")

        def join(self, timeout=None):
            raise AssertionError("joined from the wrong process")

    _stop_workers([NotMyChild()], parent=os.getpid() + 1)  # not the parent: nothing is touched
    with pytest.raises(AssertionError):
        _stop_workers([NotMyChild()], parent=os.getpid())  # the parent does ask


@pytest.mark.parametrize("cpus, cpu_workers, gpu_workers", [(2, 0, 2), (4, 0, 4), (16, 4, 8), (64, 8, 8)])
def test_default_workers_leave_a_small_cpu_to_the_model_and_follow_the_device(class_folder, monkeypatch, cpus,
                                                                              cpu_workers, gpu_workers):
    """Training on the CPU, workers compete with the model for the cores (measured 20% slower on 2 cores):
    the default follows the loader's device, also after ``to``, and survives ``new``/``test_dl``."""
    from vision_tl.data import tfmd_dl

    monkeypatch.setattr(tfmd_dl, "available_cpus", lambda: cpus)
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=4,
                                       device="cpu")
    assert (dls.train.num_workers, dls.valid.num_workers) == (cpu_workers, cpu_workers)
    assert dls.train.workers_set is None
    dls.train.to("meta")  # any non-CPU device: the accelerator rule (no batch is drawn)
    assert dls.train.num_workers == gpu_workers
    dls.train.to("cpu")
    assert dls.train.num_workers == cpu_workers
    assert dls.test_dl(dls.valid_ds.items[:2]).num_workers == cpu_workers
    assert dls.train.new(bs=2).workers_set is None
    dls.train.num_workers = 1  # what a user sets is kept, whatever the device
    assert dls.train.num_workers == 1 and dls.train.new(bs=2).num_workers == 1
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        dls.train.num_workers = -1
