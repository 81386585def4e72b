"""Open an image robustly: any mode to RGB, EXIF orientation applied, bombs refused, errors name the file.

Every image the toolkit reads goes through :func:`open_image`, so the training data, the prediction
inputs and :func:`verify_images` agree on what counts as a readable image.

Conversions (documented because they change pixels):
- EXIF orientation is applied (a phone photo taken upright is upright).
- Transparency (RGBA, LA, PA, palette with a transparent colour) is composited on a **white** matte,
  the way an image viewer shows it; the hidden colour under transparent pixels is never used.
- 16-bit and 32-bit greyscale (``I;16``, ``I``) are scaled to 8 bits (``v / 257``); float images
  (``F``) are clipped to [0, 255] (or scaled from [0, 1] when their maximum is at most 1).
- CMYK, YCbCr, LAB, HSV, greyscale and bilevel images are converted with PIL's own conversions.
- Images with more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (or ``max_pixels``) are refused before
  decoding: a small file can declare a huge canvas (a decompression bomb).
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..basics import L
from ..basics import Path as LsPath

ImageSource = str | Path | bytes | Image.Image

_MATTE = (255, 255, 255)  # transparency is shown on white
# the last line of a worker's traceback as torch passes it on (a file name with ": " is cut at the first)
_WORKER_MESSAGE = re.compile(r"^\S*ImageError: cannot use image (.+?): (.*)$", re.MULTILINE)


class ImageError(ValueError):
    """An image that cannot be used; ``.path`` names the file (None for in-memory data), ``.reason`` why."""

    def __init__(self, path: str | Path | None, reason: str | None = None):
        if reason is None:  # one argument: a whole message (how torch re-raises a DataLoader worker's error)
            self.path, self.reason = None, str(path)
            found = _WORKER_MESSAGE.findall(self.reason)
            if found:  # "Caught ImageError in DataLoader worker ...": put the file first, as raised
                self.path, self.reason = Path(found[-1][0]), found[-1][1]
                path = f"cannot use image {self.path}: {self.reason}\n{path}"
            super().__init__(str(path))
            return
        self.path = Path(path) if path is not None else None
        self.reason = reason
        where = str(self.path) if self.path is not None else "<in-memory image>"
        super().__init__(f"cannot use image {where}: {reason}")

    def __reduce__(self):  # so that the error survives the trip back from a DataLoader worker
        return (type(self), (self.path, self.reason))


def _max_pixels(max_pixels: int | None) -> int | None:
    return Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels


def _draft(img: Image.Image, draft_size: tuple[int, int], transposed: bool) -> None:
    """Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while keeping both sides >= ``draft_size`` (h, w)."""
    h, w = draft_size
    if transposed:  # EXIF says the stored image is rotated by 90 degrees: ask for the swapped size
        h, w = w, h
    img.draft(None, (max(1, int(w)), max(1, int(h))))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB as documented at the top of this module."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        matte = Image.new("RGBA", rgba.size, _MATTE + (255,))
        return Image.alpha_composite(matte, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img)
        if mode == "F":
            arr = arr.astype(np.float32)
            arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
            arr8 = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        elif mode == "I" and arr.size and arr.max() <= 255 and arr.min() >= 0:
            arr8 = arr.astype(np.uint8)  # an 8-bit image stored as 32-bit ints
        else:
            arr8 = np.clip(arr.astype(np.int64) // 257, 0, 255).astype(np.uint8)
        if arr8.ndim == 3:  # e.g. 16-bit RGB: keep the first three channels
            return Image.fromarray(np.ascontiguousarray(arr8[..., :3]), "RGB")
        return Image.fromarray(arr8, "L").convert("RGB")
    return img.convert("RGB")


def _kind(mode: int) -> str:
    kinds = {stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
             stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}
    return kinds.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file, without ever blocking.

    A plain ``open`` of a named pipe (a FIFO called ``x.jpg``) waits for a writer forever; opening it
    non-blocking returns at once, and ``fstat`` on the open file then tells what it is (no race between
    checking and opening). ``O_NONBLOCK`` changes nothing for regular files.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except (IsADirectoryError, PermissionError) as e:
        reason = "not a regular file (a folder)" if path.is_dir() else f"cannot open: {e.strerror or e}"
        raise ImageError(path, reason) from None
    except OSError as e:
        raise ImageError(path, f"cannot open: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(path, f"not a regular file ({_kind(st.st_mode)}): nothing was read from it")
        if st.st_size == 0:
            raise ImageError(path, "empty file (0 bytes)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_image(
    src: ImageSource,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Open ``src`` (a path, encoded bytes or a PIL image) as a fully decoded RGB PIL image.

    Args:
        src: file path, the bytes of an encoded image, or a PIL image.
        draft_size: ``(h, w)``; JPEGs are then decoded at the smallest DCT scale (1/8, 1/4, 1/2)
            that still has both sides at least this large (much faster when shrinking).
        max_pixels: refuse larger images (default ``PIL.Image.MAX_IMAGE_PIXELS``).

    Raises:
        ImageError: missing, empty, truncated, corrupt or non-image file, not a regular file (a named
            pipe, a device, a folder: never opened for reading, so never blocks), or too many pixels.
    """
    if isinstance(src, Image.Image):
        return _decode(src, None, draft_size, max_pixels)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise ImageError(None, "no data (0 bytes)")
        return _decode(io.BytesIO(bytes(src)), None, draft_size, max_pixels)
    if isinstance(src, (str, Path)):
        path = Path(src)
        with open_regular(path) as f:
            return _decode(f, path, draft_size, max_pixels)
    raise TypeError(f"open_image expects a path, bytes or a PIL image, got {type(src).__name__}")


def _decode(src: BinaryIO | Image.Image, path: Path | None, draft_size: tuple[int, int] | None,
            max_pixels: int | None) -> Image.Image:
    """``open_image`` once the source is an open file, a byte buffer or a PIL image."""
    if isinstance(src, Image.Image):
        img = src
    else:
        try:
            img = Image.open(src)
        except Image.DecompressionBombError as e:
            raise ImageError(path, f"too many pixels (decompression bomb?): {e}") from None
        except UnidentifiedImageError:
            raise ImageError(path, "not an image file PIL can read") from None
        except OSError as e:
            raise ImageError(path, f"cannot open: {e}") from None
    limit = _max_pixels(max_pixels)
    w, h = img.size
    if limit is not None and w * h > limit:
        if img is not src:  # close only what we opened
            img.close()
        raise ImageError(path, f"{w}x{h} = {w * h} pixels is more than the limit of {limit} (decompression bomb?)")
    try:
        if draft_size is not None and img.format == "JPEG":
            orientation = img.getexif().get(0x0112, 1)
            _draft(img, draft_size, transposed=orientation in (5, 6, 7, 8))
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return _to_rgb(img)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        if img is not src:  # close only what we opened
            img.close()
        raise ImageError(path, f"cannot decode ({type(e).__name__}: {e})") from None


def load_rgb(src: ImageSource, draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """``open_image(src, draft_size)`` as a contiguous, writable uint8 HWC RGB array."""
    return np.array(open_image(src, draft_size=draft_size), dtype=np.uint8)  # np.asarray would be read-only


def _check_one(path: Path) -> bool:
    try:
        open_image(path)
        return True
    except ImageError:
        return False


def verify_images(files: Iterable[str | Path], n_threads: int = 4) -> L:
    """Return the files that :func:`open_image` cannot fully decode, in the order given (an ``L``:
    ``verify_images(fns).map(Path.unlink)`` deletes them, as in fastai).

    Decoding releases the GIL, so a few threads check a large folder faster.
    """
    paths = [LsPath(f) for f in files]
    with ThreadPoolExecutor(max_workers=max(1, n_threads)) as pool:
        ok = list(pool.map(_check_one, paths))
    return L(p for p, good in zip(paths, ok) if not good)
