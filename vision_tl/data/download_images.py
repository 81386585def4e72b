"""``download_images``: fastai's helper that fills a folder from a list of image URLs.

Each URL is fetched (a few threads, a short timeout) into ``dest/00000000.jpg``, ``00000001.png``, ...
(or its own file name with ``preserve_filename=True``), written atomically so a broken transfer
leaves no half file. A URL that fails is skipped with one summary warning; when none can be fetched
(no internet access, the usual case on an air-gapped machine) a ``DownloadError`` says so and what to
do instead. ``verify_images`` then finds the files that are not images.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..files import replacing
from .external import DownloadError

__all__ = ["download_images"]

_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def _name(url: str, i: int, preserve_filename: bool) -> str:
    path = urllib.parse.urlparse(url).path
    base = os.path.basename(path)
    suffix = Path(base).suffix.lower()
    if preserve_filename and base:
        return base
    return f"{i:08d}{suffix if suffix in _IMAGE_EXTS else '.jpg'}"


def _fetch(url: str, dest: Path, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "vision_tl download_images"})
    with urllib.request.urlopen(req, timeout=timeout) as r, replacing(dest) as tmp:  # noqa: S310 - the user's URLs
        with open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)


def download_images(dest: str | Path, url_file: str | Path | None = None, urls: Sequence[str] | None = None,
                    max_pics: int = 1000, n_workers: int = 8, timeout: float = 4,
                    preserve_filename: bool = False) -> None:
    """Download the images at ``urls`` (or listed one per line in ``url_file``) into the folder ``dest``.

    Args:
        dest: the folder (created).
        url_file / urls: where the addresses come from (one of them).
        max_pics: at most this many (the first ones).
        n_workers: parallel transfers; timeout: seconds per transfer.
        preserve_filename: keep each URL's file name instead of numbering the files.

    Raises:
        DownloadError: no URL could be fetched (names the first failure and what to do offline).
    """
    if (url_file is None) == (urls is None):
        raise ValueError("download_images needs url_file= or urls= (exactly one of them)")
    if url_file is not None:
        urls = [u.strip() for u in Path(url_file).read_text().splitlines() if u.strip()]
    urls = list(urls or [])[:max_pics]
    if not urls:
        return
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    targets = [dest / _name(u, i, preserve_filename) for i, u in enumerate(urls)]

    def one(k: int) -> Exception | None:
        try:
            _fetch(urls[k], targets[k], timeout)
            return None
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported below
            return e

    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        errors = list(pool.map(one, range(len(urls))))
    failed = [(u, e) for u, e in zip(urls, errors) if e is not None]
    if len(failed) == len(urls):
        url, err = failed[0]
        raise DownloadError(
            f"download_images: none of the {len(urls)} URLs could be fetched into {str(dest)!r} (the first, {url!r}: "
            f"{type(err).__name__}: {err}). Without internet access, copy the images into {str(dest)!r} yourself "
            "(one folder per class) and go on from get_image_files", retryable=False)
    if failed:
        url, err = failed[0]
        warnings.warn(f"download_images: {len(failed)} of {len(urls)} URLs failed and were skipped (e.g. {url!r}: "
                      f"{type(err).__name__}: {err})", stacklevel=2)
