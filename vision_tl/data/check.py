"""A quick look at image files before a run: is each one an image that can be read to its end?

Validation and test images are never replaced when they cannot be read (see ``datasets.py``), so a
bad one used to stop a run after a whole training epoch. :func:`find_bad_images` looks at every file
first, in threads, without decoding it in full: the header (format, size, pixel-count limit), then the
compressed data to its end at the smallest size the format allows (a JPEG at 1/8 scale, a PNG's
chunks and checksums without inflating them). That catches missing, empty, non-image, cut and
corrupt files without decoding any image at full size; :func:`verify_images` decodes everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .images import ImageError, open_regular

__all__ = ["find_bad_images", "drop_items"]


def _look(path: Path) -> ImageError | None:
    """None when ``path`` looks readable, else the :class:`ImageError` that says why not."""
    try:
        with open_regular(path) as f:
            try:
                img = Image.open(f)
            except UnidentifiedImageError:
                return ImageError(path, "not an image file PIL can read")
            w, h = img.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and w * h > limit:
                return ImageError(path, f"{w}x{h} = {w * h} pixels is more than the limit of {limit}")
            if img.format == "JPEG":
                img.draft(None, (1, 1))  # decode at 1/8 scale: every byte is read, few pixels are made
                img.load()
            elif img.format == "PNG":
                img.verify()  # chunk checksums to the IEND chunk, no inflating
            else:
                img.load()
    except ImageError as e:
        return e
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, Image.DecompressionBombError) as e:
        return ImageError(path, f"cannot decode ({type(e).__name__}: {e})")
    return None


def find_bad_images(files: Iterable[Any], n_threads: int | None = None) -> list[ImageError]:
    """The files that cannot be used as images, each as an :class:`ImageError` (``.path``, ``.reason``),
    in the order given. Items that are not paths (in-memory images) are left alone.

    Args:
        files: paths (str or Path); other items are skipped.
        n_threads: threads that look at files at once (default: the CPU count, at most 8).
    """
    paths = [Path(f) for f in files if isinstance(f, (str, Path))]
    if not paths:
        return []
    n = n_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(n, len(paths)))) as pool:
        found = list(pool.map(_look, paths))
    return [e for e in found if e is not None]


def drop_items(ds: Any, paths: Iterable[Path]) -> int:
    """Remove the items whose path is in ``paths`` from dataset ``ds`` (and their labels); the number removed."""
    gone = {str(p) for p in paths}
    keep = [i for i, item in enumerate(ds.items) if str(item) not in gone]
    removed = len(ds.items) - len(keep)
    ds.items = [ds.items[i] for i in keep]
    if getattr(ds, "labels", None) is not None:
        ds.labels = [ds.labels[i] for i in keep]
    return removed
