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

import numpy as np

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
) -> list[Path]:
    """All image files under ``path`` (by extension, case-insensitive), sorted, hidden files skipped.

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
                found.append(Path(e.path))
            else:
                skipped.append(e.path)
    if skipped:
        shown = ", ".join(repr(s) for s in sorted(skipped)[:10]) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(f"get_image_files: skipped {len(skipped)} entries with image names that are not regular "
                      f"files (named pipes, devices, broken links): {shown}", stacklevel=2)
    return sorted(found, key=lambda p: p.as_posix())


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
    """Label = first group of ``pat`` searched in the file name (or the whole path with ``use_path``)."""

    def __init__(self, pat: str | re.Pattern, use_path: bool = False):
        try:
            self.pat = re.compile(pat)
        except re.error as e:
            raise ValueError(f"invalid regular expression {pat!r}: {e}") from None
        if self.pat.groups < 1:
            raise ValueError(f"regular expression {self.pat.pattern!r} needs a group (...) around the label")
        self.use_path = use_path
        self.__name__ = f"RegexLabeller({self.pat.pattern!r})"

    def __call__(self, item: str | Path) -> str:
        text = Path(item).as_posix() if self.use_path else Path(item).name
        m = self.pat.search(text)
        if m is None or m.group(1) is None:
            raise ValueError(f"pattern {self.pat.pattern!r} does not match {text!r}")
        return m.group(1)


def check_valid_pct(valid_pct: float) -> float:
    """``valid_pct`` must be a number in [0, 1)."""
    if isinstance(valid_pct, bool) or not isinstance(valid_pct, (int, float)) or not 0 <= valid_pct < 1:
        raise ValueError(f"valid_pct must be a number in [0, 1), got {valid_pct!r}")
    return float(valid_pct)


class RandomSplitter:
    """Random train/valid split; the same ``seed`` gives the same split on every machine and version.

    The permutation comes from ``numpy.random.default_rng(seed)`` (PCG64, stable across platforms);
    ``seed=None`` draws a fresh one. With ``valid_pct > 0`` and at least 2 items, at least one item goes
    to valid and at least one stays in train.
    """

    def __init__(self, valid_pct: float = 0.2, seed: int | None = None):
        self.valid_pct, self.seed = check_valid_pct(valid_pct), seed

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        n = len(items)
        perm = np.random.default_rng(self.seed).permutation(n)
        cut = int(self.valid_pct * n)
        if self.valid_pct > 0 and n >= 2:
            cut = min(max(cut, 1), n - 1)
        return sorted(perm[cut:].tolist()), sorted(perm[:cut].tolist())


class GrandparentSplitter:
    """Split by the name of the folder two levels up (``<train_name>/<class>/<file>``)."""

    def __init__(self, train_name: str = "train", valid_name: str = "valid"):
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence[str | Path]) -> tuple[list[int], list[int]]:
        gp = [Path(o).parent.parent.name for o in items]
        return ([i for i, g in enumerate(gp) if g == self.train_name],
                [i for i, g in enumerate(gp) if g == self.valid_name])


class IndexSplitter:
    """Valid = the given indices (or a boolean mask), train = the rest."""

    def __init__(self, valid_idx: Iterable[int] | Sequence[bool]):
        self.valid_idx = list(valid_idx)

    def __call__(self, items: Sequence[Any]) -> tuple[list[int], list[int]]:
        n = len(items)
        if self.valid_idx and all(isinstance(v, (bool, np.bool_)) for v in self.valid_idx):
            if len(self.valid_idx) != n:
                raise ValueError(f"valid mask has {len(self.valid_idx)} entries for {n} items")
            valid = {i for i, v in enumerate(self.valid_idx) if v}
        else:
            valid = {int(i) for i in self.valid_idx}
            bad = [i for i in valid if not 0 <= i < n]
            if bad:
                raise ValueError(f"valid indices out of range for {n} items: {sorted(bad)[:5]}")
        return [i for i in range(n) if i not in valid], sorted(valid)


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
