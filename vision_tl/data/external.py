"""Dataset addresses, a verified download to the cache, and safe archive extraction.

``untar_data(URLs.PETS)`` downloads an archive once (to a temporary ``.part`` file, resumed with an
HTTP ``Range`` request when the transfer breaks, checked against the size and checksums we know, then
atomically renamed), extracts it safely (no absolute paths, no ``..``, no links leaving the target,
no device files) into a temporary folder that is renamed into place, and returns the folder. A second
call finds the folder and touches no network. ``VISION_TL_HOME`` moves the cache; ``VISION_TL_MIRROR``
serves the archives from another base address (an air-gapped site's own server or a local folder).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..basics import Path as LsPath
from ..files import sibling_temp

HOME_ENV = "VISION_TL_HOME"
MIRROR_ENV = "VISION_TL_MIRROR"
_CHUNK = 1 << 20


class URLs:
    """Addresses of the standard fastai datasets (the same URLs as fastai's ``URLs``)."""

    S3 = "https://s3.amazonaws.com/fast-ai-"
    URL = f"{S3}sample/"
    S3_IMAGE = f"{S3}imageclas/"
    S3_IMAGELOC = f"{S3}imagelocal/"
    S3_COCO = f"{S3}coco/"

    # small samples
    MNIST_SAMPLE = f"{URL}mnist_sample.tgz"
    MNIST_TINY = f"{URL}mnist_tiny.tgz"
    MNIST_VAR_SIZE_TINY = f"{S3_IMAGE}mnist_var_size_tiny.tgz"
    CIFAR = f"{URL}cifar10.tgz"
    PLANET_SAMPLE = f"{URL}planet_sample.tgz"
    PLANET_TINY = f"{URL}planet_tiny.tgz"
    CAMVID_TINY = f"{URL}camvid_tiny.tgz"
    BIWI_SAMPLE = f"{URL}biwi_sample.tgz"
    DOGS = f"{URL}dogscats.tgz"
    # Imagenette / Imagewoof / Imagewang
    IMAGENETTE = f"{S3_IMAGE}imagenette2.tgz"
    IMAGENETTE_160 = f"{S3_IMAGE}imagenette2-160.tgz"
    IMAGENETTE_320 = f"{S3_IMAGE}imagenette2-320.tgz"
    IMAGEWOOF = f"{S3_IMAGE}imagewoof2.tgz"
    IMAGEWOOF_160 = f"{S3_IMAGE}imagewoof2-160.tgz"
    IMAGEWOOF_320 = f"{S3_IMAGE}imagewoof2-320.tgz"
    IMAGEWANG = f"{S3_IMAGE}imagewang.tgz"
    IMAGEWANG_160 = f"{S3_IMAGE}imagewang-160.tgz"
    IMAGEWANG_320 = f"{S3_IMAGE}imagewang-320.tgz"
    # image classification
    PETS = f"{S3_IMAGE}oxford-iiit-pet.tgz"
    CALTECH_101 = f"{S3_IMAGE}caltech_101.tgz"
    CARS = f"{S3_IMAGE}stanford-cars.tgz"
    CIFAR_100 = f"{S3_IMAGE}cifar100.tgz"
    CUB_200_2011 = f"{S3_IMAGE}CUB_200_2011.tgz"
    FLOWERS = f"{S3_IMAGE}oxford-102-flowers.tgz"
    FOOD = f"{S3_IMAGE}food-101.tgz"
    MNIST = f"{S3_IMAGE}mnist_png.tgz"
    LSUN_BEDROOMS = f"{S3_IMAGE}bedroom.tgz"
    # image localization (the multi-label chapter's PASCAL; BIWI is keypoints, out of scope but named)
    PASCAL_2007 = f"{S3_IMAGELOC}pascal_2007.tgz"
    PASCAL_2012 = f"{S3_IMAGELOC}pascal_2012.tgz"
    BIWI_HEAD_POSE = f"{S3_IMAGELOC}biwi_head_pose.tgz"


@dataclass(frozen=True)
class Checksum:
    """What we know about an archive: its byte size, the sha256 of the whole file (``None`` when no
    reliable published value exists) and fastai's ``md5`` of the first MiB (``head_md5``)."""

    size: int | None = None
    sha256: str | None = None
    head_md5: str | None = None


# Sizes and first-MiB md5s as recorded by fastai 2.8 (fastai/data/download_checks.py). No full-file
# sha256 is published for these archives; we never invent one (see datasets.md). After a download
# the sha256 we computed is stored next to the archive and checked whenever the archive is reused.
KNOWN_CHECKSUMS: dict[str, Checksum] = {
    URLs.PETS: Checksum(811706944, None, "e4db5c768afd933bb91f5f594d7417a4"),
    URLs.MNIST_SAMPLE: Checksum(3214948, None, "2dbc7ec6f9259b583af0072c55816a88"),
    URLs.MNIST_TINY: Checksum(342207, None, "56143e8f24db90d925d82a5a74141875"),
    URLs.MNIST_VAR_SIZE_TINY: Checksum(565372, None, "b71a930f4eb744a4a143a6c7ff7ed67f"),
    URLs.MNIST: Checksum(15683414, None, "03639f83c4e3d19e0a3a53a8a997c487"),
    URLs.CIFAR: Checksum(168168549, None, "a5f8c31371b63a406b23368042812d3c"),
    URLs.CIFAR_100: Checksum(169168619, None, "e5e65dcb54b9d3913f7b8a9ad6607e62"),
    URLs.DOGS: Checksum(839285364, None, "3e483c8d6ef2175e9d395a6027eb92b7"),
    URLs.PLANET_SAMPLE: Checksum(15523994, None, "8bfb174b3162f07fbde09b54555bdb00"),
    URLs.PLANET_TINY: Checksum(997569, None, "490873c5683454d4b2611fb1f00a68a9"),
    URLs.CAMVID_TINY: Checksum(2314212, None, "2cf6daf91b7a2083ecfa3e9968e9d915"),
    URLs.BIWI_SAMPLE: Checksum(593774, None, "9179f4c1435f4b291f0d5b072d60c2c9"),
    URLs.IMAGENETTE: Checksum(1557161267, None, "2c774ecb40005b35d7937d50f5d42336"),
    URLs.IMAGENETTE_160: Checksum(99003388, None, "c475f8f7617a200ba35b9facc48443c3"),
    URLs.IMAGENETTE_320: Checksum(341663724, None, "1f1f74f133caff120e575856659b87a2"),
    URLs.IMAGEWOOF: Checksum(1343715595, None, "2cc1c1e36e20cb6fd24ffb978edcb487"),
    URLs.IMAGEWOOF_160: Checksum(92612825, None, "3559b194123981a540b87132dbda412f"),
    URLs.IMAGEWOOF_320: Checksum(328387740, None, "7a1fd92672a559a85de76e4810a20c21"),
    URLs.IMAGEWANG: Checksum(2900347689, None, "2b7776bac0fc95db72ac8a3b091a3e30"),
    URLs.IMAGEWANG_160: Checksum(191498213, None, "dab9b1d97b95574ac64122a19bc74ca1"),
    URLs.IMAGEWANG_320: Checksum(669826647, None, "fff8ac034d60e14fcf7789845e625263"),
    URLs.CALTECH_101: Checksum(131740031, None, "d673425306e98ee4619fcdeef8a0e876"),
    URLs.CARS: Checksum(1957803273, None, "9045d6673c9ced0889f41816f6bf2f9f"),
    URLs.CUB_200_2011: Checksum(1150585339, None, "d2acaa99439dff0483c7bbac1bfe2a92"),
    URLs.FLOWERS: Checksum(345236087, None, "5666e01c1311b4c67fcf20d2b3850a88"),
    URLs.FOOD: Checksum(5686607260, None, "1a540ebf1fb40b2bf3f2294234ba7907"),
    URLs.LSUN_BEDROOMS: Checksum(4579163978, None, "35d84f38f8a15fe47e66e460c8800d68"),
}


class DownloadError(OSError):
    """A transfer failed or stayed incomplete after the retries; names the URL. ``retryable`` is
    false for answers that another attempt will not change (404, 403, ...)."""

    def __init__(self, msg: str, retryable: bool = True):
        super().__init__(msg)
        self.retryable = retryable


class ChecksumError(ValueError):
    """A downloaded or cached file does not match its expected size or checksum."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the target or is a link/device we refuse."""


def vision_tl_home() -> Path:
    """The cache root: ``$VISION_TL_HOME`` or ``~/.vision_tl``."""
    return Path(os.environ.get(HOME_ENV) or "~/.vision_tl").expanduser()


def resolve_url(url: str) -> str:
    """Where ``url`` is fetched from: with ``$VISION_TL_MIRROR`` set, the mirror plus the URL's path
    (``https://s3.amazonaws.com/fast-ai-imageclas/x.tgz`` -> ``<mirror>/fast-ai-imageclas/x.tgz``).
    A mirror without a scheme is a local folder."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    if "://" not in mirror:
        mirror = Path(mirror).expanduser().resolve().as_uri()
    return mirror.rstrip("/") + "/" + urllib.parse.urlparse(url).path.lstrip("/")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a whole file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, expected: Checksum, source: str = "") -> None:
    """Raise ``ChecksumError`` naming ``path`` (and ``source``) unless it matches ``expected``."""
    where = f"{path}" + (f" (from {source})" if source else "")
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise ChecksumError(f"{where}: expected {expected.size} bytes, got {size}")
    if expected.head_md5 is not None:
        with open(path, "rb") as f:
            got = hashlib.md5(f.read(_CHUNK), usedforsecurity=False).hexdigest()
        if got != expected.head_md5:
            raise ChecksumError(f"{where}: md5 of the first MiB should be {expected.head_md5}, got {got}")
    if expected.sha256 is not None:
        got = file_sha256(path)
        if got != expected.sha256.lower():
            raise ChecksumError(f"{where}: sha256 should be {expected.sha256}, got {got}")


def _fetch(url: str, part: Path, show_progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size); raise on a short transfer."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "vision_tl"})
    if offset and url.startswith(("http://", "https://")):
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # the part is not a prefix of what the server has: start again
            part.unlink()
            raise DownloadError(f"{url}: server refused to resume (416); restarting") from e
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}", retryable=e.code >= 500) from e
    with resp:
        resumed = getattr(resp, "status", 200) == 206
        if resumed and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()  # a partial answer for another range: never splice it onto ours
            raise DownloadError(f"{url}: server answered the wrong range "
                                f"({resp.headers.get('Content-Range')!r} for bytes={offset}-); restarting")
        if not resumed:
            offset = 0  # the server sent the whole file: a clean restart
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with open(part, "ab" if resumed else "wb") as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=Path(urllib.parse.urlparse(url).path).name, disable=not show_progress,
        ) as bar:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, ValueError) as e:  # IncompleteRead, reset, timeout
                    raise DownloadError(f"{url}: transfer broke after {received} bytes ({e})") from e
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received < total:
        raise DownloadError(f"{url}: transfer ended after {received} of {total} bytes")


def download_url(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    size: int | None = None,
    show_progress: bool = True,
    *,
    head_md5: str | None = None,
    overwrite: bool = False,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` (or its ``$VISION_TL_MIRROR`` copy) to ``dest`` and return ``dest``.

    Bytes go to ``dest.part``; a broken transfer is resumed with an HTTP ``Range`` request (or
    restarted cleanly when the server will not resume), up to ``retries`` extra attempts waiting
    ``backoff * attempt`` seconds (errors such as 404 are not retried). The file is
    checked against ``size``/``sha256``/``head_md5`` before the atomic rename to ``dest``, so ``dest``
    only ever holds a complete, verified file. An existing ``dest`` is returned when it verifies and
    is never replaced unless ``overwrite=True``.
    """
    dest = Path(dest)
    expected = Checksum(size, sha256, head_md5)
    src = resolve_url(url)
    if dest.exists() and not overwrite:
        if expected == Checksum():
            raise FileExistsError(f"{dest} already exists; pass overwrite=True to replace it")
        verify_file(dest, expected, src)
        return dest
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(src, part, show_progress, timeout)
            break
        except OSError as e:  # DownloadError, URLError, connection reset, timeout
            if attempt < retries and getattr(e, "retryable", True):
                time.sleep(backoff * attempt)  # the first retry at once, then back off
                continue
            raise DownloadError(
                f"{src}: giving up after {attempt + 1} attempt(s): {e}. Without internet access, point "
                f"{MIRROR_ENV} at a server or folder holding the archive (see datasets.md)",
                retryable=False,
            ) from None  # the message names the cause: a script's traceback stays a few lines, not a chain
    try:
        verify_file(part, expected, src)
    except ChecksumError:
        part.unlink()  # a wrong file is not worth resuming
        raise
    os.replace(part, dest)
    return dest


def _member_target(root: Path, name: str, archive: Path) -> Path:
    """The resolved path ``name`` would get under ``root``; raise if it leaves ``root``."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in pure.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would land outside the target")
    return target


def _check_tar(tar: tarfile.TarFile, root: Path, archive: Path) -> None:
    for m in tar.getmembers():
        target = _member_target(root, m.name, archive)
        if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or FIFO")
        if m.issym():
            if PurePosixPath(m.linkname).is_absolute():
                raise UnsafeArchiveError(f"{archive}: link {m.name!r} points to absolute {m.linkname!r}")
            if not (target.parent / m.linkname).resolve().is_relative_to(root):
                raise UnsafeArchiveError(f"{archive}: link {m.name!r} -> {m.linkname!r} leaves the target")
        elif m.islnk():
            _member_target(root, m.linkname, archive)


def _check_zip(zf: zipfile.ZipFile, root: Path, archive: Path) -> None:
    for info in zf.infolist():
        _member_target(root, info.filename, archive)
        mode = info.external_attr >> 16
        if mode and (mode & 0o170000) not in (0, 0o100000, 0o040000):  # only files and folders
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a link or special file")


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Safely extract a ``.tgz``/``.tar(.gz|.bz2|.xz)``/``.zip`` into the new folder ``dest``.

    Every member is checked first (refused: absolute paths, ``..``, links leaving the target, devices);
    tar extraction also uses the stdlib ``data`` filter where available. Extraction happens in a
    temporary sibling folder renamed to ``dest`` at the end; a single top-level folder in the archive
    becomes ``dest`` itself. Raises ``FileExistsError`` if ``dest`` exists.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it or choose another folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_temp(dest, "")
    tmp.mkdir()  # not mkdtemp: its 0700 would make the extracted folder unreadable to other accounts
    try:
        root = tmp.resolve()
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, root, archive)
                zf.extractall(root)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                _check_tar(tar, root, archive)
                if hasattr(tarfile, "data_filter"):
                    try:  # also catches links that escape through other links
                        tar.extractall(root, filter="data")
                    except tarfile.FilterError as e:
                        raise UnsafeArchiveError(f"{archive}: {e}") from e
                else:  # pragma: no cover - Python without PEP 706 backports
                    tar.extractall(root)
        else:
            raise ValueError(f"{archive}: not a tar or zip archive")
        entries = list(root.iterdir())
        src = entries[0] if len(entries) == 1 and entries[0].is_dir() else root
        os.replace(src, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX ``flock``) so that two processes asking for the same
    archive take turns instead of writing one ``.part`` file together. A no-op where unsupported."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stem(fname: str) -> str:
    for ext in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"):
        if fname.endswith(ext):
            return fname[: -len(ext)]
    return Path(fname).stem


def untar_data(
    url: str,
    data: str | Path | None = None,
    force_download: bool = False,
    *,
    archive: str | Path | None = None,
    sha256: str | None = None,
    show_progress: bool = True,
) -> LsPath:
    """Download (once) and extract the archive at ``url``; return the extracted folder (a ``Path`` with
    fastai's ``.ls()``).

    The folder is ``<data>/<archive name without extension>`` with ``data`` defaulting to
    ``$VISION_TL_HOME/data``; archives are kept in ``archive`` (default ``$VISION_TL_HOME/archive``).
    A second call returns the folder without network access. ``force_download=True`` removes the
    cached archive and folder and fetches again. ``sha256`` adds a full-file check to what
    ``KNOWN_CHECKSUMS`` holds for ``url``.
    """
    fname = Path(urllib.parse.urlparse(url).path).name
    if not fname:
        raise ValueError(f"url must end with an archive file name, got {url!r}")
    data_dir = Path(data).expanduser() if data is not None else vision_tl_home() / "data"
    arch_dir = Path(archive).expanduser() if archive is not None else vision_tl_home() / "archive"
    dest, arch = data_dir / _stem(fname), arch_dir / fname
    sidecar = arch.with_name(arch.name + ".sha256")
    if dest.exists() and not force_download:
        return LsPath(dest)  # the offline path: no lock, no network
    with _locked(arch.with_name(arch.name + ".lock")):
        if force_download:
            shutil.rmtree(dest, ignore_errors=True)
            for p in (arch, sidecar):
                p.unlink(missing_ok=True)
        if dest.exists():  # another process finished while we waited for the lock
            return LsPath(dest)
        known = KNOWN_CHECKSUMS.get(url, Checksum())
        expected = Checksum(known.size, sha256 or known.sha256, known.head_md5)
        if arch.exists():
            recorded = sidecar.read_text().strip() if sidecar.exists() else None
            verify_file(arch, Checksum(expected.size, expected.sha256 or recorded, expected.head_md5), url)
        else:
            download_url(url, arch, expected.sha256, expected.size, show_progress, head_md5=expected.head_md5)
            sidecar.write_text(file_sha256(arch) + "\n")
        return LsPath(extract_archive(arch, dest))
