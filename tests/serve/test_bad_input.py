"""Every bad upload is a 4xx JSON error naming the file and the reason, and the server keeps serving."""

from __future__ import annotations

import socket

import httpx
import pytest

from .helpers import API_KEY, bomb_png, image_bytes, multipart

pytestmark = pytest.mark.slow

LIMIT = 2**20  # the `server` fixture runs with --max-upload-mb 1


def _post_file(server, name, data, ctype="image/jpeg", path="/predict", params=""):
    body, form_type = multipart([("file", name, data)], content_type=ctype)
    with server.client() as c:
        return c.post(path + params, content=body, headers={"Content-Type": form_type})


@pytest.mark.parametrize("name, data, status, reason", [
    ("notes.txt", b"hello, I am text, not pixels", 400, "not an image"),
    ("cut.jpg", image_bytes(7, size=(200, 150))[:700], 400, "cannot decode"),
    ("empty.jpg", b"", 400, "empty"),
    ("bomb.png", bomb_png(), 413, "decompression bomb"),
])
def test_a_bad_image_is_a_4xx_naming_the_file_and_the_reason(server, name, data, status, reason):
    for path in ("/predict", "/cam"):
        r = _post_file(server, name, data, path=path)
        assert r.status_code == status, (path, r.text)
        error = r.json()["error"]
        assert error.startswith(repr(name) + ": ") and reason in error and "\n" not in error
    assert _post_file(server, "fine.jpg", image_bytes(8)).status_code == 200  # still serving


def test_an_unsupported_type_is_a_415(server):
    with server.client() as c:
        as_text = c.post("/predict", content=b"abc", headers={"Content-Type": "text/plain"})
        as_json = c.post("/predict", json={"file": "x"})
        no_type = c.post("/predict", content=image_bytes(1), headers={"Content-Type": ""})
    assert as_text.status_code == as_json.status_code == no_type.status_code == 415
    assert "text/plain" in as_text.json()["error"]
    part = _post_file(server, "doc.pdf", b"%PDF-1.4", ctype="application/pdf")
    assert part.status_code == 415 and part.json()["error"].startswith("'doc.pdf': unsupported type")


def test_a_wrong_field_name_and_a_bad_top_k_are_422(server):
    body, ctype = multipart([("image", "a.jpg", image_bytes(1))])
    with server.client() as c:
        r = c.post("/predict", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 422 and "no field 'file'" in r.json()["error"] and "'image'" in r.json()["error"]
        for k in ("0", "-3", "two", "1.5"):
            bad = c.post(f"/predict?top_k={k}", files={"file": ("a.jpg", image_bytes(1))})
            assert bad.status_code == 422 and "top_k" in bad.json()["error"], k
        batch = c.post("/predict/batch", files={"file": ("a.jpg", image_bytes(1))})
        assert batch.status_code == 422 and "'files'" in batch.json()["error"]


def test_a_body_over_the_limit_is_refused_from_its_content_length_before_it_is_sent(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall((f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
                   f"Content-Type: image/jpeg\r\nContent-Length: {50 * LIMIT}\r\n\r\n").encode() + b"\xff" * 1000)
        answer = b""
        while not answer.endswith(b"}"):  # answered although 49.99 MB of the body never came
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    answer = answer.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413") and "larger than the limit of 1 MB" in answer, answer


def test_a_streamed_body_over_the_limit_is_a_413(server):
    def chunks():  # chunked transfer: no Content-Length, the server counts
        for _ in range(3):
            yield b"\0" * (LIMIT // 2 + 1)

    with server.client() as c:
        r = c.post("/predict", content=chunks(), headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and "--max-upload-mb" in r.json()["error"]
        assert c.post("/predict", files={"file": ("a.jpg", image_bytes(1))}).status_code == 200


def test_a_malformed_form_is_a_400(server):
    with server.client() as c:
        r = c.post("/predict", content=b"--x\r\ngarbage", headers={"Content-Type": "multipart/form-data; boundary=x"})
        no_boundary = c.post("/predict", content=b"abc", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code in (400, 422) and "error" in r.json()
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]


def test_unknown_paths_and_methods_answer_json_errors(server):
    assert httpx.get(server.url + "/nope").json() == {"error": "Not Found"}
    r = httpx.get(server.url + "/predict")
    assert r.status_code == 405 and "error" in r.json()
