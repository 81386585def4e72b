"""How ``vision-tl`` talks on stderr: one line per warning (``warning: ...``), one line per error, and
a quiet exit when the reader of its output goes away (``vision-tl info --json | head``).

Only the command installs these, for the time of one run (``cli_warnings``); the library keeps
Python's standard warnings, which a script or notebook can filter and locate as usual.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["cli_warnings", "one_line", "quiet_broken_pipe", "say", "warning_line"]

# a Python function's name ahead of its message ("from_folder: ...", "from_csv: ..."): internal on the CLI
_FUNC_PREFIX = re.compile(r"^(?:from_\w+|[a-z]+_[a-z_]+\(\)): ")


def warning_line(message: Any) -> str:
    """``warning: <message>`` on one line (inner newlines and runs of spaces folded)."""
    return "warning: " + " ".join(str(message).split())


def say(text: str, out: TextIO | None = None) -> None:
    """Print one line on stderr (or ``out``) on a line of its own, above a progress bar in progress."""
    out = out if out is not None else sys.stderr
    try:
        if "tqdm" in sys.modules and out is sys.stderr:  # tqdm clears its bars, prints, redraws them
            from tqdm import tqdm

            tqdm.write(text, file=out)
        else:
            print(text, file=out, flush=True)
    except (OSError, ValueError):  # stderr closed: a message is not worth a crash
        pass


def _show(message: Any, category: Any, filename: str, lineno: int, file: TextIO | None = None,
          line: str | None = None) -> None:
    """``warnings.showwarning`` for the command: no file, line number or code, and above a progress bar."""
    say(warning_line(message), file)


@contextmanager
def cli_warnings() -> Iterator[None]:
    """Show warnings as ``warning: ...`` lines while the block runs (the command's ``main`` only)."""
    old = warnings.showwarning
    warnings.showwarning = _show
    try:
        yield
    finally:
        if warnings.showwarning is _show:
            warnings.showwarning = old


def one_line(e: BaseException, known: tuple[type[BaseException], ...]) -> str:
    """The first line of ``e``'s message, without a Python function's name in front; ``known`` error types
    are shown bare, others with their type name."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = _FUNC_PREFIX.sub("", msg)
    return msg if isinstance(e, known) else f"{type(e).__name__}: {msg}"


def quiet_broken_pipe() -> int:
    """After a ``BrokenPipeError`` on stdout: send what is still buffered nowhere, exit as ``SIGPIPE`` would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (a test's capture)
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a Unix tool whose reader went away
