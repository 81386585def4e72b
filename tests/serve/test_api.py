"""The HTTP API against a real server (uvicorn in a subprocess, loopback): answers, auth, metrics, docs, logs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from vision_tl import load_learner
from vision_tl.serve.auth import authorized

from .helpers import API_KEY, VOCAB, image_bytes, multipart

pytestmark = pytest.mark.slow


def test_health_names_the_model_its_checksum_and_classes(server, served_model):
    import hashlib

    r = httpx.get(server.url + "/health")  # no key needed
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["classes"] == VOCAB and body["multi_label"] is False
    assert body["model"] == served_model.name
    assert body["sha256"] == hashlib.sha256(served_model.read_bytes()).hexdigest()


def test_predict_equals_load_learner_predict_on_the_same_bytes_even_when_batched(server, served_model):
    learn = load_learner(served_model, backend="torch")
    images = [image_bytes(i, size=(60 + 7 * i, 50 + 3 * i), fmt="JPEG" if i % 2 else "PNG") for i in range(12)]
    with server.client() as c, ThreadPoolExecutor(6) as pool:  # concurrent: several share a forward pass
        answers = list(pool.map(lambda b: c.post("/predict", files={"file": ("x.jpg", b)}), images))
    for data, r in zip(images, answers):
        assert r.status_code == 200, r.text
        label, idx, probs = learn.predict(data)
        body = r.json()
        assert body["label"] == label and body["index"] == int(idx)
        got = np.array([body["probs"][c] for c in VOCAB])
        np.testing.assert_allclose(got, probs.numpy(), atol=1e-4)
        assert [k for k, _ in body["top_k"]] == [VOCAB[i] for i in np.argsort(-probs.numpy(), kind="stable")]


def test_raw_body_and_top_k(server, served_model):
    data = image_bytes(3)
    with server.client() as c:
        raw = c.post("/predict?top_k=2", content=data, headers={"Content-Type": "image/jpeg"})
        octet = c.post("/predict", content=data, headers={"Content-Type": "application/octet-stream"})
        big_k = c.post("/predict?top_k=50", files={"file": ("a.jpg", data)})
    assert raw.status_code == octet.status_code == big_k.status_code == 200
    assert len(raw.json()["top_k"]) == 2 and raw.json()["probs"] == octet.json()["probs"]
    assert len(big_k.json()["top_k"]) == len(VOCAB)  # capped at the number of classes


def test_batch_answers_in_upload_order_and_a_bad_file_does_not_fail_the_others(server, served_model):
    learn = load_learner(served_model, backend="torch")
    good = [image_bytes(10), image_bytes(11, size=(40, 90))]
    body, ctype = multipart([("files", "one.jpg", good[0]), ("files", "bad\x1b<b>name</b>.jpg", b"not an image"),
                             ("files", "two.jpg", good[1]), ("files", "empty.jpg", b"")])
    with server.client() as c:
        r = c.post("/predict/batch", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out) == 4
    for entry, data in ((out[0], good[0]), (out[2], good[1])):
        np.testing.assert_allclose([entry["probs"][c] for c in VOCAB], learn.predict(data)[2].numpy(), atol=1e-4)
    assert out[1]["error"] == "'bad\\x1b<b>name</b>.jpg': not an image file PIL can read"  # echoed, escaped
    assert "empty" in out[3]["error"] and "empty.jpg" in out[3]["error"]


def test_cam_returns_a_png_heatmap(server):
    from io import BytesIO

    from PIL import Image

    with server.client() as c:
        r = c.post("/cam", files={"file": ("a.jpg", image_bytes(5))})
        over = c.post("/cam?overlay=true&target=stripes", files={"file": ("a.jpg", image_bytes(5))})
        bad_target = c.post("/cam?target=dog", files={"file": ("a.jpg", image_bytes(5))})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    heat = Image.open(BytesIO(r.content))
    assert heat.mode == "RGBA" and min(heat.size) >= 256
    assert np.asarray(heat)[..., 3].max() > 0  # some evidence somewhere
    assert over.status_code == 200 and Image.open(BytesIO(over.content)).mode == "RGB"
    assert bad_target.status_code == 422 and "dog" in bad_target.json()["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"},
                                     {"Authorization": API_KEY}])
def test_predict_and_cam_need_the_api_key(server, headers):
    for path in ("/predict", "/predict/batch", "/cam"):
        r = httpx.post(server.url + path, files={"file": ("a.jpg", image_bytes(1))}, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer" and "API key" in r.json()["error"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_authorized_compares_in_constant_time_and_needs_the_bearer_scheme():
    import inspect

    assert authorized(None, None) and authorized("anything", "")
    assert authorized(f"Bearer {API_KEY}", API_KEY) and authorized(f"bearer {API_KEY}", API_KEY)
    assert not authorized(f"Bearer {API_KEY}x", API_KEY) and not authorized(f"Token {API_KEY}", API_KEY)
    assert not authorized(None, API_KEY) and not authorized("Bearer ", API_KEY)
    assert "compare_digest" in inspect.getsource(authorized)


def test_metrics_are_prometheus_text_with_requests_latency_batches_and_queue(server):
    from prometheus_client.parser import text_string_to_metric_families

    with server.client() as c:
        c.post("/predict", files={"file": ("a.jpg", image_bytes(2))})
        c.post("/predict", files={"file": ("a.jpg", b"junk")})
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert {"vision_tl_http_requests", "vision_tl_http_errors", "vision_tl_http_request_duration_seconds",
            "vision_tl_batch_size", "vision_tl_queue_depth"} <= set(families)
    ok = [s for s in families["vision_tl_http_requests"].samples
          if s.labels.get("path") == "/predict" and s.labels.get("status") == "200"]
    assert ok and ok[0].value >= 1
    assert any(s.labels.get("status") == "400" for s in families["vision_tl_http_errors"].samples)
    assert any(s.name == "vision_tl_batch_size_count" and s.value >= 1 for s in families["vision_tl_batch_size"].samples)


def test_docs_and_openapi_are_served_without_a_cdn(server):
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert httpx.get(server.url + "/docs-assets/swagger-ui-bundle.js").status_code == 200
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/health", "/predict", "/predict/batch", "/cam", "/metrics"} <= set(paths)
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]


def test_the_page_and_its_assets_come_from_the_server_only(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        r = httpx.get(server.url + asset)
        assert r.status_code == 200 and "://" not in r.text, asset
    assert "://" not in page.text


def test_every_request_is_one_json_log_line_and_the_start_line_names_url_model_and_classes(server):
    httpx.get(server.url + "/health")
    lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
    start = next(x for x in lines if x["event"] == "start")
    assert start["url"] == server.url + "/" and start["classes"] == VOCAB and start["backend"] == "torch"
    req = [x for x in lines if x["event"] == "request" and x["path"] == "/health"]
    assert req and {"method", "path", "status", "ms", "ts"} <= set(req[-1])
