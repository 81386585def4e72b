"""The HTTP service: an ASGI app over a loaded model (micro-batching, limits, auth, metrics, web page).

``vision_tl.serve("model.vtl", port=8000)`` runs it (``server.serve``); ``vision_tl.create_app`` builds
the ASGI app to run or mount elsewhere. The package itself is callable because the public function
``vision_tl.serve`` and this package share a name: whichever of the two Python binds to
``vision_tl.serve`` (it depends on import order), calling it serves. Nothing heavy is imported here.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> None:
        from .server import serve

        return serve(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
