"""Batch prediction's decode/forward overlap: same answers, same order, same errors as decoding in line."""

from __future__ import annotations

import threading

import pytest
import torch

from vision_tl.data.images import ImageError
from vision_tl.inference import pipeline
from vision_tl.inference.predict import _collate


@pytest.mark.parametrize("cores, threads", [(1, 1), (2, 1), (8, 1), (16, 2), (64, 10)])
def test_decode_threads_grow_with_the_cores(cores, threads):
    assert pipeline.decode_threads_for(cores) == threads


def test_prefetched_batches_come_in_order_decoded_off_the_calling_thread():
    seen = set()

    def load(i):
        seen.add(threading.current_thread().name)
        return torch.full((1,), i), None

    batches = list(pipeline.prefetched_batches(load, 7, 3, 2, _collate))
    assert [b.flatten().tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert seen and all(name.startswith("vision_tl-decode") for name in seen)


def test_the_first_bad_item_is_raised_in_order_and_nothing_runs_on():
    done = []

    def load(i):
        done.append(i)
        return (None, ValueError(f"bad item {i}")) if i in (4, 8) else (torch.zeros(1), None)

    gen = pipeline.prefetched_batches(load, 12, 3, 1, _collate)
    assert len(next(gen)) == 3
    with pytest.raises(ValueError, match="bad item 4"):
        list(gen)
    assert max(done) <= 8  # at most one batch decoded ahead of the failure, then the pool stops


def test_cpu_predict_batch_overlaps_decoding_and_matches_one_by_one(predictor, image_files, tmp_path, monkeypatch):
    from vision_tl.inference import predict

    calls = []
    monkeypatch.setattr(predict, "iter_batches", lambda *a, **k: calls.append(a[1:3]) or pipeline.iter_batches(*a, **k))
    files = image_files[:7]
    probs = predictor.predict_batch(files, bs=3, progress=False)  # more items than bs: the threaded path
    expected = torch.stack([predictor.predict(f)[2] for f in files])
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-4)
    assert calls == [(3, pipeline.decode_threads_for())]
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ImageError, match="corrupt.jpg"):
        predictor.predict_batch([*files, bad, *files], bs=3, progress=False)
