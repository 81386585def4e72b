"""Plain helpers of the newcomer tests (a cut JPEG), imported by the test
modules and by ``conftest.py``'s fixtures; fixtures stay in ``conftest.py``."""

from __future__ import annotations

import io


def cut_jpeg(path, keep: int = 300):
    """A JPEG cut short (a failed copy): the header reads, the image does not."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[:keep])
    return path
