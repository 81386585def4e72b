"""The gauntlet: hostile and broken inputs at every door (images, folders, checkpoints, exports, archives,
downloads, output files, kills). Each case ends in one line naming the input, or a documented skip with a
warning naming it; no user file changes, nothing from a user file runs, nothing hangs.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vision_tl.data.batch_tfms import imagenet_stats
from vision_tl.data.external import DownloadError, UnsafeArchiveError, download_url, extract_archive
from vision_tl.data.images import ImageError, open_image, verify_images
from vision_tl.data.sources import get_image_files

pytestmark = pytest.mark.timeout(120)  # nothing here may hang

LINUX = sys.platform.startswith("linux")
NON_UTF8 = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 file name: not valid UTF-8


# ----------------------------------------------------------------------------------------------- helpers
def folder_hash(root: Path) -> dict[str, str]:
    """Name -> content hash of every regular file under ``root`` (pipes and links by kind only)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            key = os.fsencode(p.relative_to(root)).hex()
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ("link" if p.is_symlink() else "special")
    return out


def one_line_naming(err: BaseException, name: str | Path) -> None:
    first = str(err).splitlines()[0]
    assert str(Path(name).name) in first, f"{name!r} not named in {first!r}"


def jpeg_bytes(size=(24, 32), mode="RGB", **kw) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 90).save(buf, "JPEG", **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _bomb_png() -> bytes:
    """A valid small PNG whose header declares 40000 x 40000 pixels (about 1.6 billion)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------------------------- unusable images
def _truncated_jpeg(d):
    return _write(d / "truncated.jpg", jpeg_bytes((64, 64))[:200])


def _truncated_png(d):
    data = png_bytes(Image.effect_noise((64, 64), 40))
    return _write(d / "truncated.png", data[: len(data) // 2])


def _corrupt_jpeg(d):
    data = bytearray(jpeg_bytes((64, 64)))
    data[150:400] = b"\x00" * 250
    data[2:4] = b"\xff\xff"
    return _write(d / "corrupt.jpg", bytes(data))


def _fifo(d):
    p = d / "pipe.jpg"
    os.mkfifo(p)
    return p


def _char_device_link(d):
    p = d / "zeros.jpg"
    p.symlink_to("/dev/zero")
    return p


def _folder_named_like_an_image(d):
    p = d / "folder.jpg"
    p.mkdir()
    return p


def _broken_link(d):
    p = d / "dangling.jpg"
    p.symlink_to(d / "nowhere.jpg")
    return p


BAD_IMAGES = {
    "zero-byte": lambda d: _write(d / "empty.jpg", b""),
    "text": lambda d: _write(d / "notes.jpg", b"just some text, not an image\n" * 10),
    "html": lambda d: _write(d / "page.png", b"<html><body>404 not found</body></html>"),
    "pdf": lambda d: _write(d / "doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
    "random-bytes": lambda d: _write(d / "noise.webp", bytes(np.random.default_rng(0).integers(0, 256, 512, np.uint8))),
    "truncated-jpeg": _truncated_jpeg,
    "truncated-png": _truncated_png,
    "corrupt-jpeg": _corrupt_jpeg,
    "jpeg-header-only": lambda d: _write(d / "header.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    "png-signature-only": lambda d: _write(d / "sig.png", b"\x89PNG\r\n\x1a\n"),
    "gif-header-only": lambda d: _write(d / "anim.gif", b"GIF89a\x10\x00\x10\x00"),
    "bomb-png": lambda d: _write(d / "bomb.png", _bomb_png()),
    "unicode-name-corrupt": lambda d: _write(d / "чёрный_кот_😺.jpg", b"not a jpeg"),
    "missing": lambda d: d / "gone.jpg",
    "fifo": _fifo,
    "char-device": _char_device_link,
    "folder": _folder_named_like_an_image,
    "broken-link": _broken_link,
}
if LINUX:
    BAD_IMAGES["non-utf8-name-corrupt"] = lambda d: _write(d / NON_UTF8, b"\x00" * 64)


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_is_one_line_image_error_naming_it_and_changes_nothing(case, tmp_path):
    p = BAD_IMAGES[case](tmp_path)
    before = folder_hash(tmp_path)
    with pytest.raises(ImageError) as info:
        open_image(p)
    assert info.value.path == p
    one_line_naming(info.value, p)
    assert "\n" not in str(info.value)
    assert verify_images([p]) == [p]  # verify_images agrees (and does not hang on a pipe either)
    assert folder_hash(tmp_path) == before


# --------------------------------------------------------------------------- odd but valid images: opened
def _exif_rotated(d):
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: shown 20 wide, 40 high
    img.save(d / "phone.jpg", exif=exif)
    return d / "phone.jpg", (20, 40)


def _saved(name, img, **kw):
    def make(d):
        img.save(d / name, **kw)
        return d / name, img.size
    return make


ODD_IMAGES = {
    "cmyk-jpeg": _saved("cmyk.jpg", Image.new("CMYK", (30, 20), (0, 50, 100, 0))),
    "16-bit-png": _saved("depth16.png", Image.fromarray(np.full((20, 30), 40000, np.uint16))),
    "palette-transparent-png": _saved("palette.png", Image.new("P", (30, 20), 3), transparency=3),
    "la-png": _saved("la.png", Image.new("LA", (30, 20), (120, 60))),
    "rgba-png": _saved("rgba.png", Image.new("RGBA", (30, 20), (10, 20, 30, 0))),
    "bilevel-png": _saved("bw.png", Image.new("1", (30, 20), 1)),
    "exif-rotated-jpeg": _exif_rotated,
    "unicode-name": _saved("şekil_🐈_猫.jpg", Image.new("RGB", (30, 20), 50)),
}
if LINUX:
    ODD_IMAGES["non-utf8-name"] = _saved(NON_UTF8, Image.new("RGB", (30, 20), 50), format="JPEG")


@pytest.mark.parametrize("case", sorted(ODD_IMAGES))
def test_odd_but_valid_image_opens_as_rgb_of_the_shown_size(case, tmp_path):
    p, (w, h) = ODD_IMAGES[case](tmp_path)
    before = folder_hash(tmp_path)
    img = open_image(p)
    assert img.mode == "RGB" and img.size == (w, h)
    assert folder_hash(tmp_path) == before


# ------------------------------------------------------------------------ listing: only regular files
@pytest.mark.skipif(not LINUX, reason="named pipes and device links as made here are POSIX")
@pytest.mark.parametrize("recurse", [True, False])
def test_get_image_files_skips_pipes_and_devices_with_a_warning_naming_them(tmp_path, recurse):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.jpg")
    fifo, dev = _fifo(tmp_path), _char_device_link(tmp_path)
    with pytest.warns(UserWarning) as rec:
        files = get_image_files(tmp_path, recurse=recurse)
    assert files == [tmp_path / "good.jpg"]
    msg = " ".join(str(w.message) for w in rec)
    assert str(fifo) in msg and str(dev) in msg


@pytest.mark.skipif(not LINUX, reason="named pipes")
def test_dataloaders_and_predict_never_block_on_a_named_pipe(class_folder, exported, tmp_path):
    import shutil

    from vision_tl.data.factories import ImageDataLoaders
    from vision_tl.data.item_tfms import Resize

    root = tmp_path / "data"
    shutil.copytree(class_folder, root)
    fifo = _fifo(next(p for p in root.iterdir() if p.is_dir()))
    with pytest.warns(UserWarning, match="pipe.jpg"):
        dls = ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=8,
                                           num_workers=0, device="cpu")
    assert fifo not in dls.train.dataset.items + dls.valid.dataset.items
    for xb, _ in dls.valid:
        assert xb.shape[1:] == (3, 16, 16)
    _, pred = exported
    with pytest.raises(ImageError, match="pipe.jpg.*named pipe"):
        pred.predict(fifo)
    with pytest.warns(UserWarning, match="pipe.jpg"):  # predicting a folder: the pipe is skipped
        assert len(pred.predict_batch(get_image_files(fifo.parent), num_workers=0)) == 12


# ------------------------------------------------------------------ errors from DataLoader workers
def test_bad_validation_image_with_workers_arrives_with_its_file_and_type(class_folder, tmp_path):
    import shutil

    from vision_tl.data.factories import ImageDataLoaders
    from vision_tl.data.item_tfms import Resize

    root = tmp_path / "data"
    shutil.copytree(class_folder, root)
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0, item_tfms=Resize(16), bs=4,
                                       num_workers=2, device="cpu")
    bad = dls.valid.dataset.items[1]
    bad.write_bytes(b"this is not a jpeg any more")
    with pytest.raises(ImageError) as info:
        for _ in dls.valid:
            pass
    assert info.value.path == bad
    one_line_naming(info.value, bad)
    assert type(info.value) is ImageError


@pytest.mark.slow
def test_cli_train_names_a_bad_validation_image_read_by_a_worker(train_valid_folder, tmp_path, capsys):
    import shutil

    from vision_tl.cli import main

    root = tmp_path / "data"
    shutil.copytree(train_valid_folder, root)
    bad = sorted((root / "valid").rglob("*.jpg"))[2]
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "m.vtl"
    rc = main(["train", str(root), "--arch", "resnet10t", "--size", "32", "--bs", "8", "--epochs", "1",
               "--freeze-epochs", "0", "--no-pretrained", "--num-workers", "2", "--device", "cpu", "--out", str(out)])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # the one-line error
    # found before the first batch (issue 22): the validation files are checked up front, named with the reason
    assert rc == 1 and last.startswith("vision-tl train: error: 1 validation image(s) cannot be read"), last
    assert f"{bad}: " in last
    assert not out.exists()


def test_image_error_rebuilt_from_a_worker_message_keeps_the_file():
    """What torch's ExceptionWrapper does for a user's own DataLoader: ``ImageError(message)``."""
    msg = ("Caught ImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
           '  File "x.py", line 1, in f\nvision_tl.data.images.ImageError: cannot use image /d/a b.jpg: '
           "empty file (0 bytes)\n")
    e = ImageError(msg)
    assert e.path == Path("/d/a b.jpg") and e.reason == "empty file (0 bytes)"
    assert str(e).splitlines()[0] == "cannot use image /d/a b.jpg: empty file (0 bytes)"


# ----------------------------------------------------------------------------------------- checkpoints
class _Marker:
    """Unpickling this runs ``open(marker, 'w')``: the proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tiny_model(c: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, c))


@pytest.fixture
def learn(tmp_path, tiny_dls):
    from vision_tl.train.learner import TrainingLearner

    return TrainingLearner(tiny_dls(n=16, size=8, bs=4), tiny_model(), path=tmp_path, device="cpu")


def _good_state(learn) -> bytes:
    f = learn.save("good")
    return f.read_bytes()


CHECKPOINTS = {
    "hostile-pickle": lambda learn, d: torch.save({"model": _Marker(d / "PWNED")}, d / "models" / "bad.pth"),
    "hostile-pickle-top-level": lambda learn, d: torch.save(_Marker(d / "PWNED"), d / "models" / "bad.pth"),
    "truncated-10pct": lambda learn, d: (d / "models" / "bad.pth").write_bytes(_good_state(learn)[:200]),
    "truncated-90pct": lambda learn, d: (d / "models" / "bad.pth").write_bytes(
        (b := _good_state(learn))[: len(b) * 9 // 10]),
    "zero-byte": lambda learn, d: (d / "models" / "bad.pth").write_bytes(b""),
    "random-bytes": lambda learn, d: (d / "models" / "bad.pth").write_bytes(b"hello, not a checkpoint" * 20),
    "not-a-dict": lambda learn, d: torch.save([torch.zeros(3)], d / "models" / "bad.pth"),
    "no-model-entry": lambda learn, d: torch.save({"weights": {}}, d / "models" / "bad.pth"),
    "another-model": lambda learn, d: torch.save({"model": tiny_model(c=5).state_dict()}, d / "models" / "bad.pth"),
    "another-architecture": lambda learn, d: torch.save({"model": nn.Linear(3, 3).state_dict()},
                                                        d / "models" / "bad.pth"),
}


def _make_checkpoint(case, learn, tmp_path):
    (tmp_path / "models").mkdir(exist_ok=True)
    CHECKPOINTS[case](learn, tmp_path)
    (tmp_path / "models" / "good.pth").unlink(missing_ok=True)
    return tmp_path / "models" / "bad.pth"


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_bad_checkpoint_on_load_is_one_line_checkpoint_error_naming_it(case, learn, tmp_path):
    from vision_tl.train.checkpoint import CheckpointError

    f = _make_checkpoint(case, learn, tmp_path)
    before_files, before_w = folder_hash(tmp_path), [v.clone() for v in learn.model.state_dict().values()]
    with pytest.raises(CheckpointError) as info:
        learn.load("bad")
    assert info.value.path == f
    one_line_naming(info.value, f)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()  # nothing from the file ran
    assert folder_hash(tmp_path) == before_files
    assert all(torch.equal(a, b) for a, b in zip(before_w, learn.model.state_dict().values()))


@pytest.mark.parametrize("case", ["hostile-pickle", "truncated-90pct", "another-model", "no-model-entry"])
def test_bad_checkpoint_on_resume_is_one_line_checkpoint_error_naming_it(case, learn, tmp_path):
    from vision_tl.train.checkpoint import CheckpointError

    f = _make_checkpoint(case, learn, tmp_path)
    with pytest.raises(CheckpointError) as info:
        learn.fit(1, resume="bad")
    one_line_naming(info.value, f)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("kind", ["missing", "fifo", "folder"])
def test_checkpoint_that_is_not_a_regular_file_is_named_and_never_blocks(kind, learn, tmp_path):
    (tmp_path / "models").mkdir()
    f = tmp_path / "models" / "bad.pth"
    if kind == "fifo":
        os.mkfifo(f)
    elif kind == "folder":
        f.mkdir()
    for call in (lambda: learn.load("bad"), lambda: learn.fit(1, resume="bad")):
        with pytest.raises(FileNotFoundError) as info:
            call()
        one_line_naming(info.value, f)


# --------------------------------------------------------------------------------- exports (.vtl)
@pytest.fixture
def exported(tmp_path):
    from vision_tl.data.item_tfms import Resize
    from vision_tl.inference.predict import Predictor
    from vision_tl.models.build import ModelConfig, build_model

    cfg = ModelConfig(arch="resnet10t", n_out=2, input_size=(32, 32))
    pred = Predictor(build_model(cfg, pretrained=False).eval(), ["a", "b"], [Resize(32)], imagenet_stats,
                     device="cpu", model_config=cfg)
    return pred.export(tmp_path / "model.vtl"), pred


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0xFF
    return bytes(b)


EXPORTS = {
    "truncated-header": lambda data, d: data[:100],
    "truncated-weights": lambda data, d: data[: len(data) - 1000],
    "zero-byte": lambda data, d: b"",
    "flipped-weight-byte": lambda data, d: _flip(data, len(data) - 5000),
    "flipped-header-byte": lambda data, d: _flip(data, 40),
    "hostile-pickle": lambda data, d: _pickled_marker(d),
    "fastai-pkl-zip": lambda data, d: _zip_bytes(),
}


def _pickled_marker(d: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": _Marker(d / "PWNED")}, buf)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("export/data.pkl", b"\x80\x04K\x01.")
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(EXPORTS))
def test_damaged_or_hostile_export_is_one_line_error_naming_it(case, exported, tmp_path):
    from vision_tl.inference.load import load_learner
    from vision_tl.inference.vtl import ExportFormatError

    path, _ = exported
    bad = tmp_path / "inputs" / "bad.vtl"
    bad.parent.mkdir()
    bad.write_bytes(EXPORTS[case](path.read_bytes(), tmp_path))
    before = folder_hash(tmp_path)
    with pytest.raises(ExportFormatError) as info:
        load_learner(bad)
    one_line_naming(info.value, bad)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()
    assert folder_hash(tmp_path) == before


@pytest.mark.skipif(not LINUX, reason="named pipes")
def test_export_path_that_is_a_named_pipe_is_refused_without_blocking(tmp_path):
    from vision_tl.inference.load import load_learner
    from vision_tl.inference.vtl import ExportFormatError

    os.mkfifo(tmp_path / "model.vtl")
    with pytest.raises(ExportFormatError, match="model.vtl.*named pipe"):
        load_learner(tmp_path / "model.vtl")


# ------------------------------------------------------------------------------- hostile archives
def _tar(members: list[tarfile.TarInfo], payload: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(payload) if m.isreg() else None)
    return buf.getvalue()


def _member(name, kind=tarfile.REGTYPE, linkname="", size=1):
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.size = kind, linkname, size if kind == tarfile.REGTYPE else 0
    return m


ARCHIVES = {
    "tar-dotdot": lambda d: _tar([_member("ok/../../escaped.txt")]),
    "tar-absolute": lambda d: _tar([_member(str(d / "escaped.txt"))]),
    "tar-symlink-out": lambda d: _tar([_member("top/link", tarfile.SYMTYPE, "../../escaped.txt")]),
    "tar-symlink-absolute": lambda d: _tar([_member("top/link", tarfile.SYMTYPE, "/etc/passwd")]),
    "tar-hardlink-out": lambda d: _tar([_member("top/link", tarfile.LNKTYPE, "../../escaped.txt")]),
    "tar-device": lambda d: _tar([_member("top/dev", tarfile.CHRTYPE)]),
    "tar-fifo": lambda d: _tar([_member("top/pipe.jpg", tarfile.FIFOTYPE)]),
    "zip-dotdot": lambda d: _zip({"../escaped.txt": b"x"}),
    "zip-absolute": lambda d: _zip({"/tmp/escaped.txt": b"x"}),
    "not-an-archive": lambda d: b"plain bytes, neither tar nor zip",
}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_hostile_archive_is_refused_naming_it_and_writes_nothing(case, tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    arch = work / "data.tgz"
    arch.write_bytes(ARCHIVES[case](work))
    before = folder_hash(tmp_path)
    with pytest.raises((UnsafeArchiveError, ValueError)) as info:
        extract_archive(arch, work / "out")
    one_line_naming(info.value, arch)
    assert not (work / "out").exists()
    assert folder_hash(tmp_path) == before  # nothing escaped, nothing left behind
    assert not list(work.glob(".out.*"))


# ------------------------------------------------------------------------- interrupted downloads
class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body, mode = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "half":
            self.wfile.write(body[: len(body) // 2])  # promise everything, send half, hang up
        elif mode == "reset":
            self.connection.shutdown(2)
        else:
            self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.routes = {}
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("mode", ["half", "reset"])
def test_interrupted_download_is_one_error_naming_the_url_and_leaves_no_file(server, tmp_path, mode):
    server.routes["/data.tgz"] = (os.urandom(50_000), mode)
    url = f"{server.base}/data.tgz"
    with pytest.raises(DownloadError) as info:
        download_url(url, tmp_path / "data.tgz", retries=1, backoff=0, show_progress=False, timeout=5)
    assert url in str(info.value).splitlines()[0]
    assert not (tmp_path / "data.tgz").exists()


# ---------------------------------------------------------------- output files: atomic, any name
@pytest.mark.skipif(not LINUX, reason="a file name that is not valid UTF-8 needs a bytes file system")
def test_predict_csv_handles_a_non_utf8_file_name_and_writes_its_bytes(exported, tmp_path, capsys):
    from vision_tl.cli import main

    path, _ = exported
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (40, 30), 80).save(imgs / NON_UTF8, format="JPEG")
    Image.new("RGB", (40, 30), 20).save(imgs / "plain.jpg")
    out = tmp_path / "p.csv"
    assert main(["predict", str(path), str(imgs), "--csv", str(out), "--num-workers", "0"]) == 0
    data = out.read_bytes()
    assert b"caf\xe9.jpg" in data and b"plain.jpg" in data  # the file's own name, byte for byte
    assert "caf\\xe9.jpg" in capsys.readouterr().out  # shown escaped on the terminal


def test_failed_predict_leaves_no_csv_and_the_rerun_is_not_refused(exported, tmp_path):
    from vision_tl.cli import main

    path, _ = exported
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.new("RGB", (40, 30), 80).save(imgs / "good.jpg")
    (imgs / "bad.jpg").write_bytes(b"broken")
    out = tmp_path / "out" / "p.csv"
    assert main(["predict", str(path), str(imgs), "--csv", str(out), "--num-workers", "0"]) == 1
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no half file, no temporary
    (imgs / "bad.jpg").unlink()
    assert main(["predict", str(path), str(imgs), "--csv", str(out), "--num-workers", "0"]) == 0
    header, *rows = out.read_text().splitlines()
    assert header.split(",")[0] == "file" and [r.split(",")[0] for r in rows] == [str(imgs / "good.jpg")]


def test_write_that_fails_midway_leaves_no_file_and_no_debris(tmp_path):
    from vision_tl.files import replacing

    dest = tmp_path / "report.csv"
    with pytest.raises(RuntimeError):
        with replacing(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- stale temporaries, kills
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(os.name == "nt", reason="process ids are checked with signal 0 (POSIX)")
def test_next_export_removes_stale_temps_of_dead_processes_only(exported, tmp_path):
    path, pred = exported
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".model.vtl.{dead}.0123abcd.tmp"
    stale_onnx = tmp_path / f".model.onnx.{dead}.89abcdef.onnx"
    stale_dir = tmp_path / f".pets.{dead}.00ff00ff"
    live = tmp_path / f".model.vtl.{alive}.4567cdef.tmp"
    user = [tmp_path / ".model.vtl.notes.tmp", tmp_path / f".model.vtl.{dead}.tmp", tmp_path / f"model.{dead}.x"]
    for p in (stale, stale_onnx, live, *user):
        p.write_bytes(b"partial")
    (stale_dir / "images").mkdir(parents=True)
    pred.export(tmp_path / "other.vtl")
    assert not stale.exists() and not stale_onnx.exists() and not stale_dir.exists()
    assert live.exists() and all(p.exists() for p in user)


@pytest.mark.skipif(os.name == "nt", reason="process ids are checked with signal 0 (POSIX)")
def test_stale_temp_cleanup_is_used_by_every_atomic_write(tmp_path):
    from vision_tl.files import clean_stale_temps, sibling_temp

    dead = _dead_pid()
    stale = tmp_path / f".x.pth.{dead}.0123abcd.tmp"
    stale.write_bytes(b"")
    sibling_temp(tmp_path / "y.pth")
    assert not stale.exists()
    assert clean_stale_temps(tmp_path / "no_such_folder") == []


_KILL_DURING = r"""
import os, signal, sys
import vision_tl.inference.vtl as ex
from vision_tl.data.batch_tfms import imagenet_stats
from vision_tl.data.item_tfms import Resize
from vision_tl.inference.predict import Predictor
from vision_tl.models.build import ModelConfig, build_model

def die(*a):  # the temporary file is written in full: SIGKILL before the rename
    os.kill(os.getpid(), signal.SIGKILL)

cfg = ModelConfig(arch="resnet10t", n_out=2, input_size=(32, 32))
pred = Predictor(build_model(cfg, pretrained=False).eval(), ["a", "b"], [Resize(32)], imagenet_stats,
                 device="cpu", model_config=cfg)
ex.os.replace = die
pred.export(sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_export_killed_midway_keeps_the_old_file_and_the_next_export_clears_its_debris(exported, tmp_path):
    path, pred = exported
    old = path.read_bytes()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _KILL_DURING, str(path)], capture_output=True, env=env, timeout=100)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    debris = [p for p in tmp_path.iterdir() if p.name.startswith(".model.vtl.")]
    assert len(debris) == 1 and path.read_bytes() == old
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "replacing the existing file"
        pred.export(path)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


_KILL_DURING_CHECKPOINT = r"""
import os, signal, sys
from tests.tinydata import TinyDLs  # the repository root is on PYTHONPATH
from torch import nn
from vision_tl import CheckpointCallback
from vision_tl.train.learner import TrainingLearner

real, saves = os.replace, []
def replace(src, dst):  # the second checkpoint is written in full, then SIGKILL before its rename
    saves.append(dst)
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)

os.replace = replace
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 3))
TrainingLearner(TinyDLs(n=16, size=8, bs=4), model, path=sys.argv[1], device="cpu").fit(3, cbs=[CheckpointCallback("ck")])
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_training_killed_during_a_checkpoint_save_resumes_and_the_next_save_clears_the_debris(learn, tmp_path):
    from vision_tl import CheckpointCallback

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _KILL_DURING_CHECKPOINT, str(tmp_path)],
                          capture_output=True, env=env, timeout=100)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    models = tmp_path / "models"
    assert len([p for p in models.iterdir() if p.name.startswith(".ck.pth.")]) == 1  # the killed save's debris
    learn.fit(3, cbs=[CheckpointCallback("ck")], resume="ck")  # the epoch-1 checkpoint is intact
    assert learn.epoch == 2
    assert sorted(p.name for p in models.iterdir()) == ["ck.pth"]
