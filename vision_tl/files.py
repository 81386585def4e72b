"""Small file-writing helpers shared by export, ONNX, checkpoints and downloads.

Everything vision_tl writes goes to a temporary sibling first and is renamed into place, so a crash
never leaves a half-written file under the real name. The sibling is created with plain ``open`` or
``mkdir`` (not ``mkstemp``/``mkdtemp``, which make it private), so the result gets the permissions any
new file of the user's gets under the umask, and another account or a container can read it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["sibling_temp"]


def sibling_temp(dest: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, not yet existing hidden name next to ``dest`` (same file system, so renaming is atomic)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")
