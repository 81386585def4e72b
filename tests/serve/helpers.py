"""Plain helpers of the serve tests (images, multipart bodies, a server handle, constants), imported by the test
modules and by ``conftest.py``'s fixtures; fixtures stay in ``conftest.py``."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

API_KEY = "test-key-123"


VOCAB = ["circle", "square", "stripes"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_bytes(seed: int, size: tuple[int, int] = (90, 70), fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    arr[: size[1] // 2] //= 3  # some structure, so classes differ
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(side: int = 40_000) -> bytes:
    """A valid PNG header declaring ``side`` x ``side`` pixels (far past PIL's limit) in a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def multipart(parts: list[tuple[str, str, bytes]], content_type: str = "image/jpeg") -> tuple[bytes, str]:
    """A multipart/form-data body written by hand (file names sent as they are, control characters too)."""
    boundary = "vtl-test-boundary-7d1f"
    out = b""
    for field, filename, data in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Server:
    """``python -m vision_tl.cli serve MODEL`` in a subprocess, on a free port; stderr kept in ``log``."""

    def __init__(self, model: Path, tmp: Path, *args: str, api_key: str | None = None, wait: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"server-{self.port}.log"
        env = {**os.environ, "VISION_TL_API_KEY": api_key or ""}
        cmd = [sys.executable, "-m", "vision_tl.cli", "serve", str(model), "--port", str(self.port),
               "--backend", "torch", *args]
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server did not get ready in {timeout} s:\n{self.log.read_text()}")

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=60, **kwargs)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()
        return self.proc.returncode
