"""Small file-writing helpers shared by export, ONNX, checkpoints and downloads.

Everything vision_tl writes goes to a temporary sibling first and is renamed into place, so a crash
never leaves a half-written file under the real name; the result gets the permissions any new file
of the user's would get (``0666``/``0777`` less the umask), so another account or a container can
read an exported model.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["sibling_temp", "umask_mode"]


def sibling_temp(dest: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, not yet existing hidden name next to ``dest`` (same file system, so renaming is atomic)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def umask_mode(path: str | Path) -> None:
    """Give ``path`` the mode a new file (or folder) gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~mask)
