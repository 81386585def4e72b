"""One log line per request (JSON, for log collectors) and the request metrics: a plain ASGI middleware."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from .metrics import Metrics

__all__ = ["AccessLog", "log_event"]

logger = logging.getLogger("vision_tl.serve")


def log_event(event: str, **fields: Any) -> None:
    """Log one JSON object: ``{"ts", "event", **fields}`` (keys sorted after those two)."""
    ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    logger.info(json.dumps({"ts": ts, "event": event, **dict(sorted(fields.items()))}, default=str))


class AccessLog:
    """Wraps an ASGI app: times each HTTP request, logs method, path, status and ms, counts it."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            path = scope.get("path", "")
            self.metrics.observe(scope["method"], path, status, seconds)
            client = scope.get("client") or ("", 0)
            log_event("request", method=scope["method"], path=path, status=status, ms=round(seconds * 1000, 2),
                      client=client[0])
