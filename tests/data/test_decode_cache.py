"""The main process decodes each file once across epochs; a changed file is decoded again; workers skip it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vision_tl import ImageDataLoaders, RandomResizedCrop, Resize, aug_transforms
from vision_tl.data import decode_cache


@pytest.fixture
def cache():
    yield decode_cache.configure(64)
    decode_cache.configure()


def _epoch(dl) -> list[torch.Tensor]:
    return [xb for xb, _ in dl]


def _dls(folder, workers, **kw):
    return ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, bs=8, num_workers=workers, device="cpu",
                                        item_tfms=kw.pop("item_tfms", Resize(24)), **kw)


def test_the_second_epoch_decodes_nothing_and_gives_what_an_uncached_run_gives(class_folder, cache):
    dls = _dls(class_folder, 0, item_tfms=RandomResizedCrop(24), batch_tfms=aug_transforms())
    dls.train.set_epoch(0)
    first = _epoch(dls.train) + _epoch(dls.valid)
    n = sum(len(xb) for xb in first)  # the training epoch drops its last partial batch
    assert cache.misses == n and cache.hits == 0 and len(cache) == n
    dls.train.set_epoch(0)  # the same epoch again: the same seeds, now from the cache
    again = _epoch(dls.train) + _epoch(dls.valid)
    assert cache.misses == n and cache.hits == n
    decode_cache.configure(0)  # off: decoded from disk again
    dls.train.set_epoch(0)
    uncached = _epoch(dls.train) + _epoch(dls.valid)
    for a, b, c in zip(first, again, uncached):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_a_file_replaced_on_disk_is_decoded_again(tmp_path, cache):
    f = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30, 3), 10, np.uint8)).save(f)
    first = decode_cache.load_rgb_cached(f)
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "b.png")
    shutil.move(tmp_path / "b.png", f)  # same path and size, another inode and content
    assert first[0, 0, 0] == 10 and decode_cache.load_rgb_cached(f)[0, 0, 0] == 200
    assert cache.misses == 2


def test_callers_get_their_own_writable_copy(tmp_path, cache):
    f = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(f)
    a = decode_cache.load_rgb_cached(f)
    a[:] = 0  # an item transform that works in place
    b = decode_cache.load_rgb_cached(f)
    assert cache.hits == 1 and b.flags.writeable and int(b.min()) == 7


def test_the_budget_is_never_exceeded_and_the_least_recently_used_go_first(tmp_path):
    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((32, 32, 3), i, np.uint8)).save(files[-1])
    cache = decode_cache.configure(2.5 * 32 * 32 * 3 / 2**20)  # room for two images
    try:
        out = [int(decode_cache.load_rgb_cached(f)[0, 0, 0]) for f in files]
        assert out == [0, 1, 2, 3, 4] and len(cache) == 2 and cache.nbytes <= cache.budget
        decode_cache.load_rgb_cached(files[3])  # 3 is used again: 4 is now the oldest
        decode_cache.load_rgb_cached(files[0])
        assert cache.hits == 1 and len(cache) == 2
        decode_cache.load_rgb_cached(files[3])
        assert cache.hits == 2  # 3 stayed, 4 went
        decode_cache.load_rgb_cached(files[4])
        assert cache.hits == 2
    finally:
        decode_cache.configure()


def test_a_replaced_file_frees_its_old_array(tmp_path, cache):
    f = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(f)
    decode_cache.load_rgb_cached(f)
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(f)  # rewritten in place, another size
    assert decode_cache.load_rgb_cached(f).shape == (16, 24, 3)
    assert len(cache) == 1 and cache.nbytes == 16 * 24 * 3


def test_worker_processes_do_not_fill_the_cache(class_folder, cache):
    dls = _dls(class_folder, 1)
    _epoch(dls.train)
    assert len(cache) == 0 and cache.hits == cache.misses == 0


@pytest.mark.parametrize("value", ["lots", "nan", "inf", "-1"])
def test_a_bad_budget_in_the_environment_names_the_variable(monkeypatch, value):
    monkeypatch.setattr(decode_cache, "_cache", None)
    monkeypatch.setenv("VISION_TL_DECODE_CACHE_MB", value)
    with pytest.raises(ValueError, match="VISION_TL_DECODE_CACHE_MB"):
        decode_cache.decode_cache()


def test_the_default_budget_is_at_most_a_sixteenth_of_the_memory():
    assert 0 < decode_cache.default_budget() <= decode_cache.DEFAULT_BUDGET_MB * 2**20
