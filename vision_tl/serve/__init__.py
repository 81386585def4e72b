"""The HTTP service: an ASGI app over a loaded model (micro-batching, limits, auth, metrics, web page)."""
