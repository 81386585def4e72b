"""Architecture names timm and torchvision know, read from their source files without importing them.

Importing timm (and with it torch) takes seconds; a typo in ``--arch`` should be answered at once, with a
"did you mean" hint. The names are those registered with ``@register_model`` (and timm's deprecated
aliases), found by scanning the installed packages' model modules. ``tests/models/test_names.py`` checks
that the scan finds exactly ``timm.list_models()``. If the scan finds nothing (an unusual installation),
no name is refused here and timm decides later.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from pathlib import Path

__all__ = ["arch_suggestions", "check_arch_name", "timm_model_names", "torchvision_model_names"]

_DEF = re.compile(r"def\s+(\w+)\s*\(")
_DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.S)
_KEY = re.compile(r"['\"]([\w.-]+)['\"]\s*:")


def _models_dir(package: str) -> Path | None:
    """``<package>/models`` of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return folder if folder.is_dir() else None


def _registered(folder: Path | None) -> frozenset[str]:
    """Functions decorated with ``@register_model`` in ``folder/*.py``, plus deprecated aliases."""
    names: set[str] = set()
    for f in sorted(folder.glob("*.py")) if folder is not None else []:
        text = f.read_text(encoding="utf-8", errors="replace")
        if "register_model" not in text:
            continue
        pending = False
        for line in text.splitlines():
            if line.startswith("@register_model"):
                pending = True
            elif pending and line.startswith("def "):
                m = _DEF.match(line)
                if m:
                    names.add(m.group(1))
                pending = False
        for block in _DEPRECATIONS.findall(text):
            names.update(_KEY.findall(block))
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def timm_model_names() -> frozenset[str]:
    """Every architecture name ``timm.create_model`` accepts (without a ``.tag``); empty if not found."""
    return _registered(_models_dir("timm"))


@functools.lru_cache(maxsize=1)
def torchvision_model_names() -> frozenset[str]:
    """torchvision's classification builders (``torchvision.models.<name>``); empty if not found."""
    return _registered(_models_dir("torchvision"))


def arch_suggestions(arch: str, n: int = 3) -> list[str]:
    """Known names closest to ``arch`` (difflib), best first."""
    base = arch.split(".", 1)[0]
    pool = timm_model_names() | torchvision_model_names()
    return difflib.get_close_matches(base, pool, n=n, cutoff=0.6)


def check_arch_name(arch: str) -> None:
    """Raise ``ValueError`` (with "did you mean ...?") unless ``arch`` (``name`` or ``name.tag``) is a timm
    architecture. Fast: nothing heavy is imported."""
    known = timm_model_names()
    base = arch.split(".", 1)[0]
    if not known or base in known:
        return
    if base in torchvision_model_names():
        raise ValueError(f"arch {arch!r} is a torchvision model, not a timm name: in Python pass the builder "
                         f"torchvision.models.{base} itself; --arch and strings take timm names (timm.list_models())")
    close = arch_suggestions(arch)
    hint = f"; did you mean {' or '.join(close)}?" if close else " (see timm.list_models())"
    raise ValueError(f"unknown architecture {arch!r}{hint}")
