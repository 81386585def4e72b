"""``serve``: run the app under uvicorn, with the start-up line, JSON logs and a clean SIGTERM.

``SIGTERM`` (or Ctrl-C) stops accepting connections, lets the requests in flight finish (up to the
request timeout) and returns, so the process exits 0. With ``workers > 1`` uvicorn starts that many
processes, each loading the model; they rebuild the settings from ``$VISION_TL_SERVE_CONFIG``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .access import log_event
from .config import ServeConfig

__all__ = ["serve", "app_from_env", "MISSING_EXTRA"]

MISSING_EXTRA = 'vision-tl serve needs the serve extra: pip install "vision_tl[serve]"'
_ENV = "VISION_TL_SERVE_CONFIG"


def _setup_logging() -> None:
    logger = logging.getLogger("vision_tl.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def check_installed() -> None:
    """Raise ``ImportError`` with the pip command when the serve extra is missing."""
    import importlib

    for module in ("fastapi", "uvicorn", "python_multipart", "prometheus_client"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ImportError(f"{MISSING_EXTRA} (cannot import {module!r})") from None


def app_from_env() -> Any:
    """The app of one uvicorn worker process (``serve(workers=N)``): settings from ``$VISION_TL_SERVE_CONFIG``."""
    from .app import create_app

    _setup_logging()
    data = json.loads(os.environ[_ENV])
    data["model"], data["cors_origins"] = Path(data["model"]), tuple(data["cors_origins"])
    return create_app(ServeConfig(**data), preload=True)  # no worker takes connections before its model


def _start_line(config: ServeConfig, host: str, port: int, workers: int) -> None:
    from .. import read_manifest  # the public name: its module may move (issue 16)

    manifest = read_manifest(config.model)  # a wrong file fails here, before the server starts
    url_host = f"[{host}]" if ":" in host else host
    backend = config.backend or os.environ.get("VISION_TL_BACKEND") or "auto"
    log_event("start", url=f"http://{url_host}:{port}/", model=str(config.model), backend=backend,
              classes=manifest.get("vocab"), workers=workers, auth=bool(config.api_key))
    if host in ("0.0.0.0", "::", ""):
        log_event("warning", message=f"listening on all interfaces ({host}): anyone who can reach this machine "
                  "can call the API" + ("" if config.api_key else "; consider --api-key"))


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          **options: Any) -> None:
    """Serve ``model`` over HTTP until SIGTERM or Ctrl-C (see ``create_app`` for ``options``).

    Binds 127.0.0.1 unless told otherwise. Raises ``RuntimeError`` when the model fails to load
    (the server stops at once), ``ImportError`` naming the extra when FastAPI/uvicorn are missing.
    """
    check_installed()
    import uvicorn

    from .app import create_app

    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be in [0, 65535], got {port!r}")
    config = ServeConfig(model=Path(model), **options)
    _setup_logging()
    _start_line(config, host, port, workers)
    common = dict(host=host, port=port, log_level="warning", access_log=False, server_header=False,
                  timeout_graceful_shutdown=int(config.timeout_s) + 5)
    if threading_main():  # uvicorn re-raises SIGTERM after its graceful shutdown: let that be a no-op, exit 0
        signal.signal(signal.SIGTERM, lambda *_: None)
    if workers > 1:
        data = asdict(config)
        data["model"] = str(config.model.resolve())
        os.environ[_ENV] = json.dumps(data)
        uvicorn.run("vision_tl.serve.server:app_from_env", factory=True, workers=workers, **common)
        return
    box: dict[str, Any] = {}

    def stop(e: BaseException) -> None:
        box["error"] = e
        box["server"].should_exit = True

    server = uvicorn.Server(uvicorn.Config(create_app(config, on_load_error=stop), **common))
    box["server"] = server
    server.run()
    if "error" in box:
        e = box["error"]
        raise RuntimeError(f"cannot serve {str(model)!r}: {type(e).__name__}: {e}") from e
    log_event("stopped", model=str(config.model))


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
