"""Where the items and labels come from: list image files, label them, split them (seeded).

Labels are computed here, in the main process, once: a lambda label function never has to travel to
a DataLoader worker, and a label function that fails is reported with the file it failed on.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..basics import L
from ..basics import Path as LsPath
from .splitters import (  # noqa: F401 - the splitters moved to splitters.py; still importable from here
    GrandparentSplitter,
    IndexSplitter,
    RandomSplitter,
    check_valid_pct,
)

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".tga",
})


class LabelError(ValueError):
    """A label could not be computed for ``path``; the message names the file and the cause."""

    def __init__(self, path: Any, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"cannot label {path}: {reason}")


def get_image_files(
    path: str | Path, recurse: bool = True, folders: Sequence[str] | None = None
) -> L:
    """All image files under ``path`` (by extension, case-insensitive), sorted, hidden files skipped:
    an ``L`` of ``Path`` (fastai's list with ``.map``; the paths have ``.ls()``).

    Args:
        path: a folder.
        recurse: look in subfolders too.
        folders: only these top-level subfolders of ``path`` (e.g. ``["train", "valid"]``).

    Only regular files (and links to them) are listed: a named pipe called ``x.jpg`` would block
    whoever opened it, so it (like a device or a broken link) is skipped with a warning naming it.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"get_image_files: folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"get_image_files: {str(root)!r} is not a folder")
    tops = [root / f for f in folders] if folders else [root]
    for top in tops:
        if not top.is_dir():
            raise FileNotFoundError(f"get_image_files: folder {str(top)!r} (from folders={folders!r}) does not exist")
    found: list[Path] = []
    skipped: list[str] = []
    for top in tops:
        entries = _walk(top) if recurse else _scan(top)
        for e in entries:
            if not _is_image_name(e.name):
                continue
            if _is_regular(e):
                found.append(LsPath(e.path))
            else:
                skipped.append(e.path)
    if skipped:
        shown = ", ".join(repr(s) for s in sorted(skipped)[:10]) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(f"get_image_files: skipped {len(skipped)} entries with image names that are not regular "
                      f"files (named pipes, devices, broken links): {shown}", stacklevel=2)
    return L(sorted(found, key=lambda p: p.as_posix()))


def _is_regular(entry: os.DirEntry) -> bool:
    """A regular file (or a link to one): never a named pipe, whose opening would block forever."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _scan(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` that are not folders (an unreadable folder has none)."""
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not _is_dir(e)]
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _walk(top: Path) -> Iterator[os.DirEntry]:
    """Every non-folder entry under ``top``, following links to folders; hidden folders skipped.

    Each real folder is visited once, so a symlink loop cannot recurse forever. Entries come with
    their type from the directory listing, so telling regular files from pipes costs no extra calls.
    """
    seen: set[str] = set()
    stack = [str(top)]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:  # unreadable folder: skipped, as os.walk does
            continue
        for e in entries:
            if not _is_dir(e):
                yield e
            elif not e.name.startswith("."):
                stack.append(e.path)


def _is_image_name(name: str) -> bool:
    # "._x.jpg" (macOS resource forks) and other hidden files are not images
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def parent_label(path: str | Path) -> str:
    """The name of the folder holding the file (ImageNet-style ``<class>/<file>`` layout)."""
    return Path(path).parent.name


def label_items(items: Sequence[Any], label_func: Callable[[Any], Any]) -> list[str]:
    """Apply ``label_func`` to every item, as strings; a failure names the item and the cause.

    Booleans and numbers become their ``str`` (fastai lesson 1's ``is_cat`` gives "False"/"True").
    """
    labels: list[str] = []
    for item in items:
        try:
            lab = label_func(item)
        except Exception as e:  # noqa: BLE001 - any user error is re-raised with the file named
            raise LabelError(item, f"label function {_fname(label_func)} raised {type(e).__name__}: {e}") from e
        if lab is None:
            raise LabelError(item, f"label function {_fname(label_func)} returned None")
        labels.append(str(lab))
    return labels


def _fname(f: Callable) -> str:
    return getattr(f, "__name__", repr(f))


class RegexLabeller:
    """Label = first group of regex ``pat`` (fastai's ``RegexLabeller(pat, match=False)``).

    Where it looks: ``use_path=None`` (default) searches the file name, and the full POSIX path when the
    name does not match, so both ``r'^(.+)_\\d+.jpg$'`` and fastai's full-path ``r'/([^/]+)_\\d+.jpg$'``
    work on a path; ``use_path=False``/``True``: the name only / the full path only. ``match=True``
    anchors at the start (``re.match``) instead of searching.
    """

    def __init__(self, pat: str | re.Pattern, match: bool = False, use_path: bool | None = None):
        try:
            self.pat = re.compile(pat)
        except re.error as e:
            raise ValueError(f"invalid regular expression {pat!r}: {e}") from None
        if self.pat.groups < 1:
            raise ValueError(f"regular expression {self.pat.pattern!r} needs a group (...) around the label")
        self.match, self.use_path = match, use_path
        self.__name__ = f"RegexLabeller({self.pat.pattern!r})"

    def _find(self, text: str) -> str | None:
        m = self.pat.match(text) if self.match else self.pat.search(text)
        return None if m is None else m.group(1)

    def __call__(self, item: str | Path) -> str:
        name, full = Path(item).name, Path(item).as_posix()
        texts = [name] if self.use_path is False else [full] if self.use_path else [name, full]
        for text in texts:
            found = self._find(text)
            if found is not None:
                return found
        raise ValueError(f"pattern {self.pat.pattern!r} does not match {texts[0]!r}")

    def __repr__(self) -> str:
        return self.__name__


class using_attr:  # noqa: N801 - fastai's name
    """``using_attr(f, 'name')(x)`` is ``f(x.name)``: apply a labeller to an attribute of the item."""

    def __init__(self, f: Callable[[Any], Any], attr: str):
        if not callable(f):
            raise TypeError(f"using_attr needs a function, got {f!r}")
        self.f, self.attr = f, attr
        self.__name__ = f"using_attr({_fname(f)}, {attr!r})"

    def __call__(self, item: Any) -> Any:
        return self.f(getattr(item, self.attr))

    def __repr__(self) -> str:
        return self.__name__


class ColReader:
    """Read column(s) ``cols`` (names or positions) of a DataFrame row, as fastai's ``ColReader``.

    ``pref``/``suff`` turn the value into ``f"{pref}{value}{suff}"`` (a ``Path`` prefix is a folder);
    ``label_delim`` splits the value into a list of labels (an empty cell gives ``[]``). Several
    columns give a list of values.
    """

    def __init__(self, cols: str | int | Sequence[str | int], pref: str | Path = "", suff: str = "",
                 label_delim: str | None = None):
        self.cols = list(cols) if isinstance(cols, (list, tuple)) else [cols]
        self.pref = str(pref) + os.sep if isinstance(pref, Path) else str(pref)
        self.suff, self.label_delim = suff, label_delim
        self.__name__ = f"ColReader({cols!r})"

    def _one(self, row: Any, col: str | int) -> Any:
        if isinstance(col, int) and not isinstance(col, bool) and hasattr(row, "iloc") and col not in row.index:
            value = row.iloc[col]
        else:
            try:
                value = row[col]
            except (KeyError, IndexError, TypeError):
                cols = list(row.index) if hasattr(row, "index") and not callable(row.index) else None
                raise KeyError(f"no column {col!r} in the row" + (f"; columns are {cols!r}" if cols else "")) from None
        if self.label_delim is not None:
            return split_labels(value, self.label_delim)
        if not self.pref and not self.suff:
            return value
        return f"{self.pref}{value}{self.suff}"

    def __call__(self, row: Any) -> Any:
        if len(self.cols) == 1:
            return self._one(row, self.cols[0])
        return [self._one(row, c) for c in self.cols]

    def __repr__(self) -> str:
        return self.__name__


def make_vocab(labels: Iterable[str], vocab: Sequence[str] | None = None) -> list[str]:
    """Sorted unique labels, or the user's ``vocab`` (checked to cover every label)."""
    found = sorted(set(labels))
    if vocab is None:
        return found
    vocab = [str(v) for v in vocab]
    if len(set(vocab)) != len(vocab):
        raise ValueError(f"vocab has duplicates: {vocab!r}")
    missing = [lab for lab in found if lab not in set(vocab)]
    if missing:
        raise ValueError(f"labels {missing[:10]!r} are not in the vocab given ({vocab!r})")
    return vocab


def resolve_files(path: str | Path, fnames: Sequence[Any]) -> list[Path]:
    """Paths as given when they exist, else relative to ``path``; missing files are an error."""
    path, out, missing = Path(path), [], []
    for f in fnames:
        p = Path(f)
        if not p.exists() and not p.is_absolute() and (path / p).exists():
            p = path / p
        if not p.exists():
            missing.append(str(f))
        out.append(p)
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) not found (relative to {str(path)!r}): {missing[:5]}")
    return out


def df_column(df: Any, col: int | str, arg: str) -> Any:
    """The column name for ``col`` (a name or a position), or an error naming what exists."""
    cols = list(df.columns)
    if isinstance(col, int) and not isinstance(col, bool) and col not in cols:
        if not -len(cols) <= col < len(cols):
            raise ValueError(f"{arg}={col!r} is out of range: the table has {len(cols)} columns {cols!r}")
        return cols[col]
    if col not in cols:
        raise ValueError(f"{arg}={col!r} is not a column of the table; columns are {cols!r}")
    return col


def split_labels(value: Any, label_delim: str) -> list[str]:
    """A multi-label cell (``"cat dog"`` with ``label_delim=" "``, or already a list) as a list of labels."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [t for t in str(value).split(label_delim) if t]


def df_files_labels(df: Any, path: str | Path = ".", fn_col: int | str = 0, label_col: int | str = 1,
                    folder: str | None = None, suff: str = "", allow_empty: bool = False) -> tuple[list[Path], list]:
    """Files from column ``fn_col`` (as given if they exist, else ``path/folder/<name><suff>``) and
    their labels (as strings) from ``label_col``: what ``ImageDataLoaders.from_df``/``from_csv`` and
    the CLI's ``--label-from csv`` read. A missing file or an empty label is an error naming it
    (``allow_empty=True``, for multi-label sets where an image may have no label, returns empty cells as is).
    """
    fn, lab = df_column(df, fn_col, "fn_col"), df_column(df, label_col, "label_col")
    base = Path(path) / folder if folder else Path(path)
    names = [f"{v}{suff}" for v in df[fn].tolist()]
    items = resolve_files(base, names)
    labels = df[lab].tolist()
    if allow_empty:
        return items, labels
    bad = [i for i, v in enumerate(labels) if v is None or (isinstance(v, float) and math.isnan(v))]
    if bad:
        raise ValueError(f"column {lab!r} has no label for {names[bad[0]]!r} (and {len(bad) - 1} more)")
    return items, [str(v) for v in labels]
