"""Pieces of the service tested without a server: multi-label answers, CORS, settings, upload parsing."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from vision_tl.serve.config import ServeConfig
from vision_tl.serve.model import ServedModel
from vision_tl.serve.service import result_json
from vision_tl.serve.uploads import UploadError, parse_top_k, read_body


class _Multi:  # what result_json reads of a predictor
    vocab = ["cat", "dog", "person"]
    multi_label, thresh = True, 0.5


def test_a_multi_label_model_answers_labels_above_its_threshold_and_all_probs(tmp_path):
    model = ServedModel(_Multi(), tmp_path / "m.vtl", "0" * 64, "torch")
    out = result_json(model, np.array([0.9, 0.2, 0.7], dtype=np.float32), top_k=5)
    assert out["labels"] == ["cat", "person"] and set(out["probs"]) == {"cat", "dog", "person"}
    assert "label" not in out


def test_cors_is_off_unless_an_origin_is_configured(tmp_path):
    from vision_tl import create_app

    async def preflight(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.options("/predict", headers={"Origin": "http://example.org",
                                                        "Access-Control-Request-Method": "POST"})

    closed = asyncio.run(preflight(create_app(tmp_path / "m.vtl")))
    assert "access-control-allow-origin" not in closed.headers
    opened = asyncio.run(preflight(create_app(tmp_path / "m.vtl", cors_origins=("http://example.org",))))
    assert opened.headers["access-control-allow-origin"] == "http://example.org"


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch": 0}, "max_batch must be an integer >= 1, got 0"),
    ({"backend": "tpu"}, "backend must be one of"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"max_upload_mb": 0}, "max_upload_mb must be > 0"),
    ({"max_wait_ms": -1}, "max_wait_ms must be >= 0"),
])
def test_settings_are_checked_up_front_echoing_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ServeConfig(model="m.vtl", **kwargs)


def test_top_k_defaults_to_5_is_capped_and_refuses_non_positive_numbers():
    assert parse_top_k(None, 10) == 5 and parse_top_k(None, 3) == 3 and parse_top_k("100", 7) == 7
    for bad in ("0", "-1", "x", ""):
        with pytest.raises(UploadError) as e:
            parse_top_k(bad, 10)
        assert e.value.status == 422


def test_read_body_stops_at_the_limit_without_reading_the_rest():
    pulled = []

    async def stream():
        for i in range(100):
            pulled.append(i)
            yield b"x" * 1000

    with pytest.raises(UploadError) as e:
        asyncio.run(read_body({}, stream(), limit=2500))
    assert e.value.status == 413 and len(pulled) == 3  # the 4th chunk and later were never asked for
    with pytest.raises(UploadError) as e:
        asyncio.run(read_body({"content-length": "999999"}, stream(), limit=2500))
    assert e.value.status == 413 and len(pulled) == 3  # refused from the header: nothing read


def test_the_batcher_gathers_concurrent_images_into_one_forward_pass_and_keeps_each_answer_with_its_image():
    from vision_tl.serve.batching import Batcher

    sizes: list[int] = []

    def forward(images):
        sizes.append(len(images))
        return np.stack([np.full(3, img[0, 0, 0], dtype=np.float32) for img in images])

    async def main():
        batcher = Batcher(forward, max_batch=4, max_wait_ms=200, max_queue=16)
        batcher.start()
        try:
            images = [np.full((8, 8, 3), i, dtype=np.uint8) for i in range(6)]
            return await asyncio.gather(*(batcher.submit(img, timeout=30) for img in images))
        finally:
            await batcher.stop()

    rows = asyncio.run(main())
    assert [int(r[0]) for r in rows] == list(range(6))
    assert sizes == [4, 2]  # max_batch caps the first pass, the rest goes together


def test_the_batcher_refuses_past_its_queue_and_times_out_a_slow_prediction():
    import time

    from vision_tl.serve.batching import Batcher, Overloaded

    async def main():
        batcher = Batcher(lambda imgs: (time.sleep(0.5), np.zeros((len(imgs), 2), np.float32))[1],
                          max_batch=1, max_wait_ms=0, max_queue=2)
        batcher.start()
        try:
            with batcher.admit(2):
                with pytest.raises(Overloaded, match="busy"), batcher.admit(1):
                    pass
            assert batcher.pending == 0  # places are given back
            with pytest.raises(Overloaded, match="timeout of 0.05 s"):
                await batcher.submit(np.zeros((4, 4, 3), np.uint8), timeout=0.05)
        finally:
            await batcher.stop()

    asyncio.run(main())
