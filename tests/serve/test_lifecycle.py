"""Start, overload, stop: /health before the model is loaded, 503 past the queue, SIGTERM, the CLI's errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from vision_tl.serve.model import load_model

from .helpers import Server, free_port, image_bytes

pytestmark = pytest.mark.slow


def test_health_is_503_until_the_model_is_loaded_and_predict_says_it_is_loading(served_model):
    import uvicorn

    from vision_tl import create_app

    gate = threading.Event()

    def slow_loader(config):
        gate.wait(60)
        return load_model(config.model, backend="torch")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(served_model, loader=slow_loader), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # until the port answers (bounded)
            try:
                before = httpx.get(url + "/health", timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert before.status_code == 503 and before.json()["status"] == "loading" and "retry-after" in before.headers
        early = httpx.post(url + "/predict", files={"file": ("a.jpg", image_bytes(1))}, timeout=30)
        assert early.status_code == 503 and "loading" in early.json()["error"]
        gate.set()
        for _ in range(600):
            after = httpx.get(url + "/health", timeout=5)
            if after.status_code == 200:
                break
            time.sleep(0.1)
        assert after.status_code == 200 and after.json()["status"] == "ok"
        assert httpx.post(url + "/predict", files={"file": ("a.jpg", image_bytes(1))}, timeout=30).status_code == 200
    finally:
        gate.set()
        server.should_exit = True
        thread.join(60)


def test_past_the_queue_the_server_answers_503_with_retry_after_and_recovers(served_model, tmp_path):
    srv = Server(served_model, tmp_path, "--max-queue", "1", "--max-batch", "1", "--max-wait-ms", "0")
    big = image_bytes(3, size=(1600, 1600), fmt="PNG")  # slow to decode: each request holds its place a while
    try:
        def one(_):
            with srv.client() as c:
                return c.post("/predict", content=big, headers={"Content-Type": "image/png"})

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(12)))
        statuses = sorted(r.status_code for r in answers)
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        busy = next(r for r in answers if r.status_code == 503)
        assert busy.headers["retry-after"].isdigit() and "busy" in busy.json()["error"]
        with srv.client() as c:
            assert c.post("/predict", files={"file": ("a.jpg", image_bytes(1))}).status_code == 200
            metrics = c.get("/metrics").text
        assert 'vision_tl_http_errors_total{path="/predict",status="503"}' in metrics
    finally:
        srv.stop()


def test_sigterm_finishes_the_request_in_flight_and_exits_0(served_model, tmp_path):
    srv = Server(served_model, tmp_path)
    body = image_bytes(4)
    head = (f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as s:
            s.sendall(head + body[: len(body) // 2])  # in flight: the server waits for the rest of the body
            time.sleep(1.0)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert srv.proc.poll() is None  # still finishing our request
            s.sendall(body[len(body) // 2:])
            answer = b""
            while b"}" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b'"label"' in answer
        assert srv.proc.wait(60) == 0
        with pytest.raises(httpx.ConnectError):  # and it is gone
            httpx.get(srv.url + "/health", timeout=5)
        assert '"event": "stopped"' in srv.log.read_text()
    finally:
        srv.stop()


def test_several_worker_processes_serve_and_stop_on_sigterm(served_model, tmp_path):
    srv = Server(served_model, tmp_path, "--workers", "2")
    try:
        with srv.client() as c, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: c.post("/predict", files={"file": ("a.jpg", image_bytes(i))}), range(8)))
        assert all(r.status_code == 200 for r in answers)
    finally:
        assert srv.stop() == 0
    assert srv.log.read_text().count('"event": "model_loaded"') == 2  # one model per process


def _cli(*args, env_extra=None):
    code = "import sys; from vision_tl.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_the_cli_names_a_missing_model_file_and_exits_1(tmp_path):
    r = _cli("serve", str(tmp_path / "nope.vtl"), "--port", str(free_port()))
    assert r.returncode == 1 and "nope.vtl" in r.stderr and "not found" in r.stderr
    bad = _cli("serve", "x.vtl", "--max-batch", "0")
    assert bad.returncode == 1 and "--max-batch must be >= 1" in bad.stderr
    usage = _cli("serve", "x.vtl", "--precision", "int4")
    assert usage.returncode == 2 and "invalid choice: 'int4'" in usage.stderr


def test_without_the_serve_extra_the_cli_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['fastapi'] = None; from vision_tl.cli import main; "
            "sys.exit(main(['serve', 'model.vtl']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'pip install "vision_tl[serve]"' in r.stderr


def test_the_adapter_passes_precision_only_when_given(served_model):
    auto = load_model(served_model, backend="torch", precision="auto")  # "auto": load_learner's default
    assert auto.classes == ["circle", "square", "stripes"] and len(auto.sha256) == 64
