"""API-key check: ``Authorization: Bearer KEY``, compared in constant time."""

from __future__ import annotations

import hmac

__all__ = ["authorized"]


def authorized(header: str | None, api_key: str | None) -> bool:
    """True when no key is configured, or ``header`` is ``Bearer <api_key>`` (``hmac.compare_digest``)."""
    if not api_key:
        return True
    scheme, _, token = (header or "").partition(" ")
    # compare bytes of both, always, so the time does not depend on where (or whether) they differ
    return hmac.compare_digest(token.strip().encode(), api_key.encode()) and scheme.lower() == "bearer"
