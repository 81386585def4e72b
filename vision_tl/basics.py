"""Small helpers fastai notebooks take for granted: ``L``, ``Path.ls``, ``first``, ``tensor``, ``to_cpu``,
``CategoryMap``.

A shared leaf (imports no other vision_tl module). ``Path`` here is a ``pathlib.Path`` subclass
with ``.ls()``; pathlib itself is left untouched.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["CategoryMap", "L", "Path", "first", "tensor", "to_cpu"]


class L(list):
    """A list that prints its length first, like fastai's ``L``: ``(#3) [a, b, c]``; ``map``/``filter`` chain."""

    def map(self, f: Callable[[Any], Any]) -> L:
        return L(f(o) for o in self)

    def filter(self, f: Callable[[Any], bool]) -> L:
        return L(o for o in self if f(o))

    def sorted(self, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> L:
        return L(sorted(self, key=key, reverse=reverse))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return L(super().__getitem__(i))
        if isinstance(i, (list, tuple, np.ndarray, torch.Tensor)) and not isinstance(i, (str, bytes)):
            idx = np.asarray(i)
            if idx.dtype == bool:
                return L(o for o, keep in zip(self, idx) if keep)
            return L(super(L, self).__getitem__(int(j)) for j in idx.reshape(-1))
        return super().__getitem__(i)

    def __repr__(self) -> str:
        items = ", ".join(repr(o) for o in self[:10])
        more = "..." if len(self) > 10 else ""
        return f"(#{len(self)}) [{items}{', ' if more else ''}{more}]"


class CategoryMap(L):
    """A vocab as fastai shows it: an ``L`` of class names with ``o2i`` (name -> index).

    Being a list, it compares equal to the plain list of names; a tensor or array of indices picks
    several names (``vocab[torch.where(y == 1.)[0]]``).
    """

    @property
    def o2i(self) -> dict[Any, int]:
        return {v: i for i, v in enumerate(self)}

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, torch.Tensor) and i.ndim == 0:
            i = int(i)
        return super().__getitem__(i)


class Path(type(pathlib.Path())):  # PosixPath or WindowsPath: pathlib's own concrete class
    """``pathlib.Path`` plus fastai's ``ls``: ``path.ls()`` lists a folder as an ``L`` of ``Path``.

    ``Path.BASE_PATH = folder`` makes the paths under ``folder`` print relative to it (as fastai's
    notebooks show them); the paths themselves are unchanged.
    """

    BASE_PATH: pathlib.Path | None = None

    def __repr__(self) -> str:
        base = type(self).BASE_PATH
        if base is not None:
            try:
                return f"Path({str(self.relative_to(base))!r})"
            except ValueError:
                pass
        return f"Path({str(self)!r})"

    def ls(self, n_max: int | None = None, file_type: str | None = None, file_exts: Iterable[str] | str | None = None) -> L:
        """The folder's entries (sorted), optionally at most ``n_max``, of a MIME ``file_type`` prefix
        (``"image"``) or with the given extensions (``".jpg"``)."""
        import mimetypes

        exts = {file_exts} if isinstance(file_exts, str) else set(file_exts or ())
        out = L()
        for p in sorted(self.iterdir()):
            if exts and p.suffix.lower() not in exts:
                continue
            if file_type and not (mimetypes.guess_type(p.name)[0] or "").startswith(file_type):
                continue
            out.append(p)
            if n_max is not None and len(out) >= n_max:
                break
        return out


def first(x: Iterable[Any], f: Callable[[Any], bool] | None = None, negate: bool = False) -> Any:
    """The first element of ``x`` (for which ``f`` is true, or false when ``negate``), or ``None``."""
    for o in x:
        if f is None or bool(f(o)) != negate:
            return o
    return None


def tensor(x: Any, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """``torch.tensor`` that also takes several values (``tensor(1, 2, 3)``), arrays, PIL images
    (an ``(H, W[, C])`` uint8 tensor) and lists of tensors (stacked)."""
    if rest:
        x = (x, *rest)
    if isinstance(x, torch.Tensor):
        return x if not kwargs else x.to(**kwargs)
    if isinstance(x, (list, tuple)) and x and all(isinstance(o, torch.Tensor) for o in x):
        return torch.stack(list(x)).to(**kwargs) if kwargs else torch.stack(list(x))
    if isinstance(x, (list, tuple, int, float, bool)):
        return torch.tensor(x, **kwargs)
    return torch.as_tensor(np.array(x), **kwargs)  # an array, a PIL image, anything with __array__ (copied)


def to_cpu(b: Any) -> Any:
    """``b`` with every tensor in it (nested in tuples, lists, dicts) moved to the CPU, as fastai's ``to_cpu``."""
    if isinstance(b, torch.Tensor):
        return b.cpu()
    if isinstance(b, dict):
        return {k: to_cpu(v) for k, v in b.items()}
    if isinstance(b, (list, tuple)):
        out = [to_cpu(o) for o in b]
        return type(b)(*out) if hasattr(b, "_fields") else type(b)(out) if isinstance(b, list) else tuple(out)
    return b
