"""Small file-writing helpers shared by export, ONNX, checkpoints, downloads and the CLI's outputs.

Everything vision_tl writes goes to a temporary sibling first and is renamed into place, so a crash
never leaves a half-written file under the real name. The sibling is created with plain ``open`` or
``mkdir`` (not ``mkstemp``/``mkdtemp``, which make it private), so the result gets the permissions any
new file of the user's gets under the umask, and another account or a container can read it.

Temporary siblings are named ``.<name>.<pid>.<8 hex digits><suffix>``. A process killed mid-write
(SIGKILL, power loss) leaves its temporary behind; :func:`sibling_temp` removes such leftovers from
the folder it writes into, but only ones whose process id no longer runs on this machine (never a
write in progress, never a file of another naming). Caveat: a folder shared between machines or
containers with separate process-id namespaces can make a live writer there look gone here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["clean_stale_temps", "replacing", "sibling_temp"]

# our own temporary names: "." name "." pid "." 8 hex digits, then ".tmp", ".onnx" or nothing (folders)
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}(?:\.tmp|\.onnx)?")


def sibling_temp(dest: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, not yet existing hidden name next to ``dest`` (same file system, so renaming is atomic).

    Also removes stale temporaries of killed vision_tl processes from that folder (see the module doc).
    """
    dest = Path(dest)
    clean_stale_temps(dest.parent)
    return dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but belongs to someone else, or cannot tell: keep the file
    return True


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove our own temporary files (and extraction folders) in ``folder`` whose writer is gone.

    Returns what was removed. Never raises: cleaning is a courtesy, not part of the write. A no-op on
    Windows, where asking whether a process id exists is not a harmless signal.
    """
    if os.name == "nt":
        return []
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_NAME.fullmatch(entry.name)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        p = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                if not m.group(0).endswith((".tmp", ".onnx")):
                    shutil.rmtree(p)
                    removed.append(p)
            elif entry.is_file(follow_symlinks=False):
                p.unlink()
                removed.append(p)
        except OSError as e:  # removed by another process meanwhile, or not ours to remove
            warnings.warn(f"could not remove the stale temporary file {str(p)!r}: {e}", stacklevel=2)
    return removed


@contextmanager
def replacing(dest: str | Path) -> Iterator[Path]:
    """Write ``dest`` atomically: yields a temporary sibling path to write, renamed onto ``dest`` when
    the block succeeds and removed when it fails (so a failed run leaves neither a half-written file
    nor debris that makes a rerun refuse)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_temp(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
