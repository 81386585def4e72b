"""One registry of the transforms a saved model can carry, by class name.

A transform class opts in with the ``@serializable`` decorator; its ``to_dict()`` returns
``{"name": <class name>, **constructor arguments}`` and ``tfm_from_dict`` rebuilds it. Export,
load and prediction ask this registry (``is_serializable``) instead of checking names.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}


def serializable(cls: T) -> T:
    """Class decorator: instances of ``cls`` can be saved (``to_dict``) and rebuilt (``tfm_from_dict``)."""
    _REGISTRY[cls.__name__] = cls
    return cls


def is_serializable(tfm: Any) -> bool:
    """Whether ``tfm``'s exact class is registered (a user subclass is not, unless it registers itself)."""
    return _REGISTRY.get(type(tfm).__name__) is type(tfm)


def tfm_from_dict(d: Any, kind: type, what: str) -> Any:
    """Rebuild a registered transform of base class ``kind`` from ``to_dict()`` output.

    ``what`` names the kind in errors ("item transform"); JSON lists of ``size``/``ratio`` become tuples.
    """
    known = sorted(n for n, c in _REGISTRY.items() if issubclass(c, kind))
    name = d.get("name") if isinstance(d, dict) else None
    if name not in known:
        shown = repr(name) if isinstance(d, dict) else repr(d)
        raise ValueError(f"unknown {what} {shown}; known names: {known}")
    kwargs = {k: v for k, v in d.items() if k != "name"}
    for key in ("size", "ratio"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for {what} {d!r}: {e}") from None
