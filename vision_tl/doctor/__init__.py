"""The data doctor: unreadable files, duplicates and leaks, suspect labels, class balance and odd
images (:func:`doctor`), safe fixes with a journal (:func:`apply_decisions`, :func:`undo_decisions`),
and the notebook cleaner (:class:`ImageClassifierCleaner`). Modules are imported on first use.

``vision_tl.doctor(source, ...)`` is :func:`vision_tl.doctor.run.doctor` (see its docstring)."""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    """``vision_tl.doctor`` is both this package and the function: importing a submodule binds the
    package to the name ``doctor`` in ``vision_tl``, so the package answers calls as the function does."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .run import doctor

        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
