"""The doctor's optional dependencies (the ``doctor`` extra), imported only when a check needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

_PIP = {"cleanlab": "cleanlab", "imagehash": "imagehash", "sklearn": "scikit-learn", "ipywidgets": "ipywidgets"}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise ImportError(
            f"the data doctor needs {_PIP.get(top, top)!r} ({e}): pip install 'vision_tl[doctor]' "
            f"(cleanlab, imagehash, scikit-learn, ipywidgets)") from None
