"""One pass over the files: read each file's bytes once, hash them, decode the image once (small), and
keep what every later check needs (perceptual hash, a small thumbnail for the model and the report,
size and pixel statistics for the odd-image check, or why it could not be read).

The work runs in worker processes (decoding and hashing are CPU-bound); a progress bar counts files.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FileScan", "scan_files"]


@dataclass
class FileScan:
    """What the doctor knows about one file after the scan (``reason`` set when it is unreadable)."""

    path: str
    sha256: str | None = None
    reason: str | None = None
    size: tuple[int, int] | None = None  # (width, height) as stored
    phash: int | None = None  # 64-bit perceptual hash (imagehash.phash: DCT)
    whash: int | None = None  # 64-bit wavelet hash (imagehash.whash), which confirms a phash match
    thumb: np.ndarray | None = None  # (thumb, thumb, 3) uint8, squashed: the model's input and the report's picture
    grey_std: float = 0.0  # standard deviation of the grey levels (nearly blank when small)
    greyscale: bool = False  # all three channels (almost) equal


def _scan_one(args: tuple[str, int]) -> FileScan:
    import imagehash
    from PIL import Image

    from vision_tl.data.images import ImageError, open_image

    path, thumb = args
    out = FileScan(path)
    try:
        data = b""
        if os.path.isfile(path):  # a named pipe or a device is never opened here: open_image says what it is
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        out.reason = f"cannot read: {e.strerror or e}"
        return out
    out.sha256 = hashlib.sha256(data).hexdigest()
    try:
        src = data if data else path  # an empty or special file: open_image says what it is
        img = open_image(src, draft_size=(thumb, thumb))
        if isinstance(src, bytes):  # the size as stored, not as drafted
            with Image.open(io.BytesIO(data)) as raw:
                out.size = raw.size
        else:
            out.size = img.size
    except ImageError as e:
        out.reason = e.reason
        return out
    small = img.resize((thumb, thumb), Image.BILINEAR)
    arr = np.asarray(small, dtype=np.uint8)
    grey = arr.astype(np.float32).mean(axis=2)
    out.thumb = arr
    out.grey_std = float(grey.std())
    out.greyscale = bool(np.abs(arr.astype(np.int16) - arr[..., :1]).max() <= 8)
    # both from the small picture: phash shrinks to 32x32 anyway, and whash at 32 px without its extra
    # LL-removal pass costs a third as much and separated copies from look-alikes as well on our digits
    out.phash = _bits(imagehash.phash(small))
    out.whash = _bits(imagehash.whash(small, image_scale=32, remove_max_haar_ll=False))
    return out


def _bits(h) -> int:
    return int("".join("1" if b else "0" for b in h.hash.flatten()), 2)


def scan_files(paths: Sequence[str | Path], thumb: int = 64, num_workers: int | None = None,
               progress: bool = True) -> list[FileScan]:
    """Scan ``paths`` (in order) in ``num_workers`` processes (default: one per core)."""
    from tqdm.auto import tqdm

    from .deps import require

    require("imagehash")
    jobs = [(str(p), int(thumb)) for p in paths]
    workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc="scan (read, hash, decode)", unit="img", disable=not progress)
    if workers <= 1 or len(jobs) < 64:
        out = []
        for j in jobs:
            out.append(_scan_one(j))
            bar.update()
    else:
        chunk = max(8, min(256, len(jobs) // (workers * 8) or 1))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            out = []
            for r in pool.map(_scan_one, jobs, chunksize=chunk):
                out.append(r)
                bar.update()
    bar.close()
    return out
