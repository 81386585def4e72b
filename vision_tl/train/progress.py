"""What a fit shows while it runs: live bars in a terminal or notebook, plain lines in a log file.

``ProgressCallback`` picks one of three modes (``progress_mode``):

- ``"bar"`` (a terminal, a notebook): one tqdm bar per training or validation pass with the live
  loss (a widget in Jupyter when ipywidgets is installed), and the epoch table (one HTML table,
  updated in place, in a notebook);
- ``"lines"`` (stdout is not a terminal: a job, ``nohup``, CI, a pipe; or ``progress=False``,
  ``VISION_TL_PROGRESS=0``): never a redrawn bar; the epoch table one line per epoch, and one
  line per ``every`` training batches when asked;
- ``"silent"`` (``--quiet``): nothing at all.

``lr_find`` asks for one bar that counts iterations instead (``iteration_bar``). ``write_line``
prints a line above any live bar (what the CLI and lr_find use for status lines), and
``warnings_through_bar`` prints the warnings a fit raises that way too, located at the user's call.
Warnings keep going through the standard ``warnings.formatwarning``, so a program that replaces it
(the CLI's one-line ``warning: ...``) changes them here as well.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from .callbacks import Callback

__all__ = ["ProgressCallback", "make_bar", "progress_mode", "user_call_site", "warnings_through_bar", "write_line"]

MODES = ("bar", "lines", "silent")
_ENV = "VISION_TL_PROGRESS"
_ENV_VALUES = {"0": "lines", "off": "lines", "false": "lines", "no": "lines", "lines": "lines",
               "1": None, "on": None, "auto": None, "true": None, "bar": "bar", "silent": "silent", "quiet": "silent"}


def _fmt(v: Any) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.6f}" if math.isfinite(v) else str(v)
    return str(v)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where an HTML table renders), without importing IPython otherwise."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_mode(progress: bool | str | None = None, stream: TextIO | None = None) -> str:
    """``"bar"``, ``"lines"`` or ``"silent"`` for a ``progress`` setting, the environment and the terminal.

    ``progress``: ``None``/``True``/``"auto"`` decide from ``$VISION_TL_PROGRESS`` (``0``: no bars) and
    where the output goes (bars in a notebook or when ``stream``, default stdout, is a terminal; lines
    otherwise); ``False`` means ``"lines"``; ``"bar"``, ``"lines"``, ``"silent"`` are taken as they are.
    """
    if progress is False:
        return "lines"
    if isinstance(progress, str) and progress != "auto":
        if progress not in MODES:
            raise ValueError(f"progress must be True, False, 'auto' or one of {MODES}, got {progress!r}")
        return progress
    if progress not in (None, True, "auto"):
        raise ValueError(f"progress must be True, False, 'auto' or one of {MODES}, got {progress!r}")
    env = os.environ.get(_ENV, "").strip().lower()
    if env:
        if env not in _ENV_VALUES:
            raise ValueError(f"${_ENV} must be one of {sorted(_ENV_VALUES)}, got {env!r}")
        if _ENV_VALUES[env] is not None:
            return _ENV_VALUES[env]
    if _in_notebook():
        return "bar"
    stream = sys.stdout if stream is None else stream
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return "lines"


def write_line(text: str, file: TextIO | None = None) -> None:
    """Print ``text`` as one line above any live tqdm bar (plainly when there is none), flushed at once."""
    from tqdm import tqdm

    out = sys.stderr if file is None else file
    tqdm.write(text, file=out)
    try:
        out.flush()
    except (AttributeError, ValueError, OSError):
        pass


class _LineBar:
    """A bar's interface for a log file: nothing redrawn, a line every ``every`` steps and/or at the end."""

    def __init__(self, total: int, desc: str, every: int | None, at_close: bool) -> None:
        self.total, self.desc, self.every, self.at_close = total, desc, every, at_close
        self.n, self.postfix = 0, ""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def _line(self) -> None:
        write_line(f"{self.desc}: {self.n}/{self.total}" + (f"  {self.postfix}" if self.postfix else ""))

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.every and self.n % self.every == 0 and self.n < self.total:
            self._line()

    def close(self) -> None:
        if self.at_close and self.n:
            self._line()
        self.at_close = False


class _NoBar(_LineBar):
    def __init__(self) -> None:
        super().__init__(0, "", None, False)

    def _line(self) -> None:
        pass


def make_bar(total: int, desc: str, unit: str = "it", mode: str = "bar", every: int | None = None,
             at_close: bool = False) -> Any:
    """A bar for ``mode``: tqdm (the notebook widget in Jupyter when ipywidgets is there) that vanishes when
    closed; in ``"lines"`` mode an object with the same methods that prints a line every ``every`` steps (and
    once at ``close`` when ``at_close``); in ``"silent"`` mode one that prints nothing."""
    if mode == "silent":
        return _NoBar()
    if mode == "lines":
        return _LineBar(total, desc, every, at_close)
    import importlib.util

    if _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:  # tqdm.auto would warn in a notebook without ipywidgets
        from tqdm import tqdm
    # every batch is drawn (miniters=1, no minimum interval): the live loss is never stale, and a bar that
    # closes quickly still shows where it got to
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, miniters=1, mininterval=0)


class ProgressCallback(Callback):
    """Bars with the live loss and the epoch table in a terminal or notebook; lines in a log (see module doc).

    Args:
        show_table: print one row per epoch (``[epoch, train_loss, valid_loss, *metrics, time]``).
        progress: ``None``/``True``/``"auto"``, ``False`` (no bars), or a mode (``"bar"``, ``"lines"``,
            ``"silent"``); see ``progress_mode``. Read again at every fit, so ``learn.progress.progress =
            False`` works between fits.
        every: in ``"lines"`` mode, also one line every ``every`` training batches (``None``: per epoch only).
    """

    order = 60

    def __init__(self, show_table: bool = True, progress: bool | str | None = None, every: int | None = None) -> None:
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be None or an int >= 1, got {every!r}")
        progress_mode(progress)  # checked now, not at the first fit
        self.show_table, self.progress, self.every = show_table, progress, every
        self.bar: Any = None
        self._single: Any = None  # the one bar of iteration_bar, when active

    @property
    def mode(self) -> str:
        """The mode in force now: ``"bar"``, ``"lines"`` or ``"silent"``."""
        return progress_mode(self.progress)

    @contextmanager
    def iteration_bar(self, total: int, desc: str) -> Iterator[None]:
        """One bar of ``total`` iterations over every epoch of the fits inside (no epoch table).

        In ``"lines"`` mode it prints one line at the end (and every ``every`` iterations when set).
        """
        show_table, self.show_table = self.show_table, False
        self._single = make_bar(total, desc, mode=self.mode, every=self.every, at_close=True)
        try:
            yield
        finally:
            self._single.close()
            self._single, self.show_table = None, show_table

    def before_fit(self) -> None:
        self._mode = self.mode
        self._header_done, self._rows, self._handle = False, [], None

    def before_train(self) -> None:
        if self.learn.fitting and self._single is None:
            desc = f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch}"
            self.bar = make_bar(len(self.learn.dl), desc, mode=self._mode, every=self.every)

    def before_validate(self) -> None:
        if self.learn.fitting and self._single is None:
            self.bar = make_bar(len(self.learn.dl), "valid", mode=self._mode if self._mode == "bar" else "silent")

    def after_batch(self) -> None:
        bar = self._single if self._single is not None else self.bar
        if bar is None or (self._single is not None and not self.learn.training):
            return
        smooth = self.learn.recorder.smooth_loss if self.learn.training else math.nan
        if math.isfinite(smooth):  # every batch: a short epoch must not show a stale loss
            bar.set_postfix_str(f"loss {smooth:.4f}", refresh=False)
        bar.update(1)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    after_train = after_validate = after_cancel_train = after_cancel_validate = after_fit = _close

    def after_epoch(self) -> None:
        if not self.show_table or self._mode == "silent":
            return
        names, row = self.learn.recorder.metric_names, self.learn.recorder.log
        widths = [max(len(n), 8) for n in names]
        header = "  ".join(n.ljust(w) for n, w in zip(names, widths))
        line = "  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths))
        self._rows.append(row)
        if self._mode == "bar" and _in_notebook():  # one HTML table per fit, updated in place
            self._show_html(names, header)
            return
        if not self._header_done:
            write_line(header.rstrip(), sys.stdout)
            self._header_done = True
        write_line(line.rstrip(), sys.stdout)

    def _show_html(self, names: list[str], header: str) -> None:
        from html import escape

        from IPython.display import display

        def tr(cells: list, tag: str) -> str:
            return "<tr>" + "".join(f"<{tag}>{escape(_fmt(c))}</{tag}>" for c in cells) + "</tr>"

        html = "<table><thead>" + tr(names, "th") + "</thead><tbody>" + "".join(tr(r, "td") for r in self._rows)
        widths = [max(len(n), 8) for n in names]
        text = "\n".join([header] + ["  ".join(_fmt(v).ljust(w) for v, w in zip(r, widths)) for r in self._rows])
        bundle = {"text/html": html + "</tbody></table>", "text/plain": text}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


# ----- warnings during a fit -------------------------------------------------------------------
_TRAIN_DIR = Path(__file__).resolve().parent


def _internal_dirs() -> tuple[str, ...]:
    """Where warnings come from that the user did not write: this package and torch (its DataLoader)."""
    import torch

    return (str(_TRAIN_DIR.parent), str(Path(torch.__file__).resolve().parent))


def user_call_site() -> tuple[str, int] | None:
    """``(file, line)`` of the innermost frame outside ``vision_tl/train``: the user's fit call."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = frame.f_code.co_filename
        if not Path(fname).resolve().is_relative_to(_TRAIN_DIR) and not fname.startswith("<frozen"):
            return fname, frame.f_lineno
        frame = frame.f_back
    return None


def _is_stock(show: Any) -> bool:
    """True when ``show`` is the standard library's own ``warnings.showwarning`` (nobody replaced it)."""
    return getattr(show, "__module__", None) == "warnings" and getattr(show, "__name__", None) == "showwarning"


class _AboveBars:
    """A file-like target for the standard warning display: each message goes out through ``write_line``."""

    def write(self, text: str) -> int:
        write_line(text.rstrip("\n"), sys.stderr)
        return len(text)

    def flush(self) -> None:
        pass


@contextmanager
def warnings_through_bar(call_site: tuple[str, int] | None) -> Iterator[None]:
    """Print the warnings raised inside the block above any bar (``write_line``), not through it.

    Warnings raised inside vision_tl or torch (a skipped bad image, say, which torch's fetcher
    reports) are located at ``call_site``, the user's own call, instead. The standard display does
    the work (``warnings.formatwarning``, and recording under ``catch_warnings(record=True)``, as in
    pytest, are kept); only where its text goes changes. A ``showwarning`` someone else installed is
    left alone.
    """
    old = warnings.showwarning
    if not _is_stock(old):
        yield
        return
    internal, target = _internal_dirs(), _AboveBars()

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if file is not None and file is not sys.stderr:
            old(message, category, filename, lineno, file, line)
            return
        if call_site is not None and str(Path(filename).resolve()).startswith(internal):
            filename, lineno, line = call_site[0], call_site[1], None
        old(message, category, filename, lineno, target, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = old
