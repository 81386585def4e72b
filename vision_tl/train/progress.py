"""What a fit shows while it runs: a progress bar with the live loss, the epoch table, and warnings.

``ProgressCallback`` opens one tqdm bar per training or validation pass (a notebook widget inside
Jupyter when ipywidgets is installed), refreshes the smoothed loss after every batch, and prints a
row per epoch (one HTML table, updated in place, in a notebook). ``lr_find`` asks it for one bar
that counts iterations instead (``iteration_bar``). ``warnings_through_bar`` prints the warnings a
fit raises above the bar instead of through it, located at the user's call.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .callbacks import Callback

__all__ = ["ProgressCallback", "make_bar", "user_call_site", "warnings_through_bar"]


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


def make_bar(total: int, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (the notebook widget in Jupyter when ipywidgets is there) that vanishes when closed."""
    import importlib.util

    if _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:  # tqdm.auto would warn in a notebook without ipywidgets
        from tqdm import tqdm
    # every batch is drawn (miniters=1, no minimum interval): the live loss is never stale, and a bar that
    # closes quickly still shows where it got to
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, miniters=1, mininterval=0)


class ProgressCallback(Callback):
    """A tqdm bar per training/validation pass with the live loss, and a printed epoch table."""

    order = 60

    def __init__(self, show_table: bool = True) -> None:
        self.show_table = show_table
        self.bar: Any = None
        self._single: Any = None  # the one bar of iteration_bar, when active

    @contextmanager
    def iteration_bar(self, total: int, desc: str) -> Iterator[None]:
        """One bar of ``total`` iterations over every epoch of the fits inside (no epoch table)."""
        show_table, self.show_table = self.show_table, False
        self._single = make_bar(total, desc)
        try:
            yield
        finally:
            self._single.close()
            self._single, self.show_table = None, show_table

    def before_fit(self) -> None:
        self._header_done, self._rows, self._handle = False, [], None

    def before_train(self) -> None:
        if self.learn.fitting and self._single is None:
            self.bar = make_bar(len(self.learn.dl), f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch}")

    def before_validate(self) -> None:
        if self.learn.fitting and self._single is None:
            self.bar = make_bar(len(self.learn.dl), "valid")

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
        if not self.show_table:
            return
        from tqdm import tqdm

        names, row = self.learn.recorder.metric_names, self.learn.recorder.log
        widths = [max(len(n), 8) for n in names]
        header = "  ".join(n.ljust(w) for n, w in zip(names, widths))
        line = "  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths))
        self._rows.append(row)
        if _in_notebook():  # one HTML table per fit, updated in place (plain text as the fallback)
            self._show_html(names, header)
            return
        if not self._header_done:
            tqdm.write(header)
            self._header_done = True
        tqdm.write(line)

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


def _stock_display() -> bool:
    """True when warnings go to stderr the standard way: not replaced, not recorded (catch_warnings)."""
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    orig = getattr(warnings, "_showwarning_orig", None)
    return orig is not None and warnings.showwarning is orig and getattr(impl, "__name__", "") == "_showwarnmsg_impl"


@contextmanager
def warnings_through_bar(call_site: tuple[str, int] | None) -> Iterator[None]:
    """Print the warnings raised inside the block with ``tqdm.write`` (above any bar, not through it).

    Warnings raised inside vision_tl or torch (a skipped bad image, say, which torch's fetcher
    reports) are located at ``call_site``, the user's own call, instead. Only the standard display
    is replaced, for the block alone: under ``catch_warnings(record=True)`` (pytest, say) or another
    hook nothing changes.
    """
    if not _stock_display():
        yield
        return
    old, internal = warnings.showwarning, _internal_dirs()

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if file is not None and file is not sys.stderr:
            old(message, category, filename, lineno, file, line)
            return
        if call_site is not None and str(Path(filename).resolve()).startswith(internal):
            filename, lineno, line = call_site[0], call_site[1], None
        from tqdm import tqdm

        tqdm.write(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"), file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = old
