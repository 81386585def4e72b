"""Prometheus metrics of one app (its own registry, so two apps in one process do not collide)."""

from __future__ import annotations

__all__ = ["Metrics", "route_label"]

KNOWN_PATHS = ("/", "/health", "/predict", "/predict/batch", "/cam", "/metrics", "/docs", "/openapi.json")


def route_label(path: str) -> str:
    """The ``path`` label: a known route, ``/static`` for assets, else ``other`` (bounded cardinality)."""
    if path in KNOWN_PATHS:
        return path
    return "/static" if path.startswith("/static/") else "other"


class Metrics:
    """Requests and errors by status, latency histogram, batch sizes, queue depth, model loaded."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("vision_tl_http_requests", "HTTP requests by method, path and status",
                                ["method", "path", "status"], registry=r)
        self.errors = Counter("vision_tl_http_errors", "HTTP responses with status >= 400, by path and status",
                              ["path", "status"], registry=r)
        self.latency = Histogram("vision_tl_http_request_duration_seconds", "Request latency by path",
                                 ["path"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram("vision_tl_batch_size", "Images per forward pass", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue_depth = Gauge("vision_tl_queue_depth", "Images admitted and not answered yet", registry=r)
        self.model_loaded = Gauge("vision_tl_model_loaded", "1 once the model is loaded", registry=r)

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        label = route_label(path)
        self.requests.labels(method, label, str(status)).inc()
        if status >= 400:
            self.errors.labels(label, str(status)).inc()
        self.latency.labels(label).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
