"""Downloads and extraction against a loopback HTTP server serving archives built by the tests."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vision_tl.data.external import (
    KNOWN_CHECKSUMS,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    URLs,
    download_url,
    extract_archive,
    resolve_url,
    untar_data,
)


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (bytes, mode)``; modes: ok, truncate_once, truncate, no_range,
    wrong_range (the first transfer breaks; a resume request gets a 206 for another range)."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if self.path not in srv.routes:
            self.send_error(404)
            return
        body, mode = srv.routes[self.path]
        n_seen = sum(p == self.path for p, _ in srv.requests)
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].split("-")[0]) if rng and mode != "no_range" else 0
        if start and mode == "wrong_range":  # a 206 for bytes we did not ask for
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
            start = 0
        elif start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if mode == "truncate" or (mode in ("truncate_once", "no_range", "wrong_range") and n_seen == 1):
            payload = payload[: len(payload) // 2]  # promise everything, send half, hang up
        self.wfile.write(payload)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.routes, srv.requests = {}, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _tgz(files: dict[str, bytes], top: str = "toyset") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _big_tgz() -> bytes:
    """An archive big enough to be split by a truncated transfer (random bytes do not compress)."""
    rnd = hashlib.sha256(b"seed").digest() * 1  # deterministic noise
    noise = b"".join(hashlib.sha256(rnd + i.to_bytes(4, "little")).digest() for i in range(8000))
    return _tgz({"images/Abyssinian_1.jpg": noise, "images/beagle_1.jpg": b"dog"})


def test_untar_data_downloads_extracts_and_second_call_is_offline(server, tmp_path):
    body = _tgz({"images/Bengal_1.jpg": b"cat", "images/pug_1.jpg": b"dog"})
    server.routes["/toyset.tgz"] = (body, "ok")
    url = f"{server.base}/toyset.tgz"
    path = untar_data(url, data=tmp_path / "data", archive=tmp_path / "arch", show_progress=False)
    assert path == tmp_path / "data" / "toyset"
    assert (path / "images" / "Bengal_1.jpg").read_bytes() == b"cat"
    sidecar = tmp_path / "arch" / "toyset.tgz.sha256"
    assert sidecar.read_text().strip() == hashlib.sha256(body).hexdigest()
    n = len(server.requests)
    server.routes.clear()  # the "network" is gone: the cache must answer
    again = untar_data(url, data=tmp_path / "data", archive=tmp_path / "arch", show_progress=False)
    assert again == path and len(server.requests) == n


def test_cached_archive_is_reextracted_without_network(server, tmp_path):
    server.routes["/toyset.tgz"] = (_tgz({"a.txt": b"a"}), "ok")
    url = f"{server.base}/toyset.tgz"
    path = untar_data(url, data=tmp_path / "data", archive=tmp_path / "arch", show_progress=False)
    (path / "a.txt").unlink()
    path.rmdir()
    server.routes.clear()
    path = untar_data(url, data=tmp_path / "data", archive=tmp_path / "arch", show_progress=False)
    assert (path / "a.txt").read_bytes() == b"a"


def test_corrupted_cached_archive_is_refused(server, tmp_path):
    server.routes["/toyset.tgz"] = (_tgz({"a.txt": b"a"}), "ok")
    url = f"{server.base}/toyset.tgz"
    kw = dict(data=tmp_path / "data", archive=tmp_path / "arch", show_progress=False)
    path = untar_data(url, **kw)
    for p in sorted(path.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    path.rmdir()
    arch = tmp_path / "arch" / "toyset.tgz"
    raw = bytearray(arch.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte, same size
    arch.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="sha256"):
        untar_data(url, **kw)


def test_wrong_checksum_fails_and_leaves_nothing_that_looks_complete(server, tmp_path):
    server.routes["/toyset.tgz"] = (_tgz({"a.txt": b"a"}), "ok")
    with pytest.raises(ChecksumError, match="toyset.tgz"):
        untar_data(f"{server.base}/toyset.tgz", data=tmp_path / "data", archive=tmp_path / "arch",
                   sha256="0" * 64, show_progress=False)
    assert not (tmp_path / "data" / "toyset").exists()
    assert [p.name for p in (tmp_path / "arch").iterdir()] == ["toyset.tgz.lock"]  # no archive, no .part


def test_wrong_size_is_refused(server, tmp_path):
    body = _tgz({"a.txt": b"a"})
    server.routes["/toyset.tgz"] = (body, "ok")
    with pytest.raises(ChecksumError, match=f"expected {len(body) + 1} bytes, got {len(body)}"):
        download_url(f"{server.base}/toyset.tgz", tmp_path / "t.tgz", size=len(body) + 1, show_progress=False)
    assert not (tmp_path / "t.tgz").exists()


def test_truncated_transfer_is_resumed_with_range(server, tmp_path):
    body = _big_tgz()
    server.routes["/big.tgz"] = (body, "truncate_once")
    dest = download_url(f"{server.base}/big.tgz", tmp_path / "big.tgz",
                        sha256=hashlib.sha256(body).hexdigest(), show_progress=False)
    assert dest.read_bytes() == body
    ranges = [r for _, r in server.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(body) // 2}-"
    assert not (tmp_path / "big.tgz.part").exists()


def test_server_without_range_support_gives_clean_restart(server, tmp_path):
    body = _big_tgz()
    server.routes["/big.tgz"] = (body, "no_range")
    dest = download_url(f"{server.base}/big.tgz", tmp_path / "big.tgz",
                        sha256=hashlib.sha256(body).hexdigest(), show_progress=False)
    assert dest.read_bytes() == body


def test_a_resume_answered_with_the_wrong_range_restarts_cleanly(server, tmp_path):
    body = _big_tgz()
    server.routes["/big.tgz"] = (body, "wrong_range")
    dest = download_url(f"{server.base}/big.tgz", tmp_path / "big.tgz", backoff=0,
                        sha256=hashlib.sha256(body).hexdigest(), show_progress=False)
    assert dest.read_bytes() == body
    assert [r for _, r in server.requests] == [None, f"bytes={len(body) // 2}-", None]


def test_transfer_that_keeps_breaking_raises_and_leaves_no_complete_file(server, tmp_path):
    server.routes["/big.tgz"] = (_big_tgz(), "truncate")
    with pytest.raises(DownloadError, match="big.tgz"):
        download_url(f"{server.base}/big.tgz", tmp_path / "big.tgz", retries=1, show_progress=False)
    assert not (tmp_path / "big.tgz").exists()
    assert len(server.requests) == 2


def test_missing_file_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_url(f"{server.base}/nope.tgz", tmp_path / "nope.tgz", show_progress=False)
    assert len(server.requests) == 1


def test_download_url_never_overwrites_an_existing_file(server, tmp_path):
    dest = tmp_path / "mine.tgz"
    dest.write_bytes(b"precious")
    server.routes["/toyset.tgz"] = (b"new", "ok")
    with pytest.raises(FileExistsError, match="mine.tgz"):
        download_url(f"{server.base}/toyset.tgz", dest, show_progress=False)
    assert dest.read_bytes() == b"precious"
    download_url(f"{server.base}/toyset.tgz", dest, show_progress=False, overwrite=True)
    assert dest.read_bytes() == b"new"


def test_force_download_fetches_again(server, tmp_path):
    url = f"{server.base}/toyset.tgz"
    kw = dict(data=tmp_path / "data", archive=tmp_path / "arch", show_progress=False)
    server.routes["/toyset.tgz"] = (_tgz({"v.txt": b"1"}), "ok")
    untar_data(url, **kw)
    server.routes["/toyset.tgz"] = (_tgz({"v.txt": b"2"}), "ok")
    assert (untar_data(url, **kw) / "v.txt").read_bytes() == b"1"
    assert (untar_data(url, force_download=True, **kw) / "v.txt").read_bytes() == b"2"


def test_mirror_env_var_serves_the_standard_urls(server, tmp_path, monkeypatch):
    server.routes["/fast-ai-imageclas/toyset.tgz"] = (_tgz({"a.txt": b"m"}), "ok")
    monkeypatch.setenv("VISION_TL_MIRROR", server.base + "/")
    monkeypatch.setenv("VISION_TL_HOME", str(tmp_path / "home"))
    url = "https://s3.amazonaws.com/fast-ai-imageclas/toyset.tgz"
    assert resolve_url(url) == f"{server.base}/fast-ai-imageclas/toyset.tgz"
    path = untar_data(url, show_progress=False)
    assert path == tmp_path / "home" / "data" / "toyset"
    assert (path / "a.txt").read_bytes() == b"m"


def test_mirror_can_be_a_local_folder(tmp_path, monkeypatch):
    folder = tmp_path / "mirror" / "fast-ai-sample"
    folder.mkdir(parents=True)
    (folder / "toyset.tgz").write_bytes(_tgz({"a.txt": b"local"}))
    monkeypatch.setenv("VISION_TL_MIRROR", str(tmp_path / "mirror"))
    path = untar_data("https://s3.amazonaws.com/fast-ai-sample/toyset.tgz", data=tmp_path / "d",
                      archive=tmp_path / "a", show_progress=False)
    assert (path / "a.txt").read_bytes() == b"local"


def test_known_datasets_have_sizes_and_pets_url_matches_fastai():
    assert URLs.PETS == "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz"
    assert KNOWN_CHECKSUMS[URLs.PETS].size == 811706944
    assert all(c.size and c.size > 0 for c in KNOWN_CHECKSUMS.values())


# --- malicious archives -------------------------------------------------------------------------


def _tar_with(tmp_path: Path, *members: tarfile.TarInfo) -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, linkname
    m.size = 1 if kind == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize(
    "member, reason",
    [
        (_member("/tmp/evil_abs.txt"), "absolute"),
        (_member("data/../../evil.txt"), r"'\.\.'"),
        (_member("data/link", tarfile.SYMTYPE, "../../outside"), "leaves the target"),
        (_member("data/abslink", tarfile.SYMTYPE, "/etc/passwd"), "absolute"),
        (_member("data/hard", tarfile.LNKTYPE, "../outside"), r"'\.\.'"),
        (_member("data/tty", tarfile.CHRTYPE), "device"),
        (_member("data/fifo", tarfile.FIFOTYPE), "device or FIFO"),
    ],
)
def test_malicious_tar_members_are_refused(tmp_path, member, reason):
    archive = _tar_with(tmp_path, _member("data/ok.txt"), member)
    with pytest.raises(UnsafeArchiveError, match=reason):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.tar"]  # temporary folder cleaned up


def test_link_escaping_through_another_link_is_refused(tmp_path):
    archive = _tar_with(
        tmp_path,
        _member("data/up", tarfile.SYMTYPE, ".."),
        _member("data/up2", tarfile.SYMTYPE, "up/.."),  # resolves outside the target
    )
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, tmp_path / "out")


def test_malicious_zip_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "bad")
    with pytest.raises(UnsafeArchiveError, match="evil.zip.*'\\.\\.'"):
        extract_archive(path, tmp_path / "out")
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_and_flat_archives_extract_into_the_named_folder(tmp_path):
    path = tmp_path / "flat.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/x.txt", "1")
        zf.writestr("b.txt", "2")
    out = extract_archive(path, tmp_path / "out")
    assert (out / "a" / "x.txt").read_text() == "1" and (out / "b.txt").read_text() == "2"
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask  # a folder others can read, like any other
    with pytest.raises(FileExistsError, match="out"):
        extract_archive(path, tmp_path / "out")


def test_known_checksums_apply_to_mirrored_files(server, tmp_path, monkeypatch):
    """A mirror serving a different file under a known name is caught by the recorded size."""
    server.routes["/fast-ai-sample/mnist_tiny.tgz"] = (_tgz({"a.txt": b"not mnist"}), "ok")
    monkeypatch.setenv("VISION_TL_MIRROR", server.base)
    with pytest.raises(ChecksumError, match="expected 342207 bytes"):
        untar_data(URLs.MNIST_TINY, data=tmp_path / "d", archive=tmp_path / "a", show_progress=False)
    assert not (tmp_path / "d" / "mnist_tiny").exists() and not (tmp_path / "a" / "mnist_tiny.tgz").exists()


def test_concurrent_calls_download_once(server, tmp_path):
    server.routes["/toyset.tgz"] = (_big_tgz(), "ok")
    kw = dict(data=tmp_path / "data", archive=tmp_path / "arch", show_progress=False)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(untar_data(f"{server.base}/toyset.tgz", **kw)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert len(server.requests) == 1


def test_zip_symlink_members_are_refused(tmp_path):
    path = tmp_path / "link.zip"
    info = zipfile.ZipInfo("data/passwd")
    info.external_attr = (0o120777 << 16)  # a symlink, as Info-ZIP stores them
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="link or special file"):
        extract_archive(path, tmp_path / "out")
