"""The ASGI app: routes, error answers, the page and the docs (``create_app``).

Routes: ``GET /`` (the page), ``GET /health``, ``POST /predict``, ``POST /predict/batch``, ``POST /cam``,
``GET /metrics``, ``GET /docs``. Every client error is JSON ``{"error": "<one line>"}`` with a 4xx
status; a 500 is a bug, and the server keeps serving after one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .access import AccessLog, log_event
from .auth import authorized
from .batching import Overloaded
from .config import ServeConfig
from .service import Loader, Service, result_json
from .uploads import UploadError, check_part, parse_top_k, read_body, read_uploads

__all__ = ["create_app"]

STATIC = Path(__file__).with_name("static")
# the page loads nothing from elsewhere; the browser enforces it
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

_IMAGE_BODY = {"content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}, "required": True}
_BATCH_BODY = {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}, "required": True}
_TOP_K = {"name": "top_k", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "default": 5},
          "description": "how many classes in `top_k` (capped at the number of classes)"}
_TARGET = {"name": "target", "in": "query", "required": False, "schema": {"type": "string"},
           "description": "class name or index to explain (default: the predicted class)"}
_OVERLAY = {"name": "overlay", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
            "description": "draw the heatmap over the image the model saw (default: the heatmap alone, with alpha)"}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, e: UploadError) -> JSONResponse:
        return _error(e.status, e.message)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, e: Overloaded) -> JSONResponse:
        return _error(503, str(e), {"Retry-After": str(e.retry_after)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        first = (e.errors() or [{}])[0]
        return _error(422, f"{'.'.join(str(x) for x in first.get('loc', ()))}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log_event("error", path=request.url.path, error=f"{type(e).__name__}: {e}")
        return _error(500, f"internal error ({type(e).__name__}); the server keeps serving")


def _check_auth(request: Request, service: Service) -> None:
    if not authorized(request.headers.get("authorization"), service.config.api_key):
        raise StarletteHTTPException(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                     headers={"WWW-Authenticate": "Bearer"})


def _parse_target(raw: str | None, classes: list[str]) -> str | int | None:
    if raw is None or raw == "":
        return None
    if raw in classes:
        return raw
    if raw.isdigit() and int(raw) < len(classes):
        return int(raw)
    raise UploadError(422, f"target must be a class name or an index below {len(classes)}, got {raw[:60]!r}")


def _flag(raw: str | None) -> bool:
    if raw is None or raw.lower() in ("", "0", "false", "no"):
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    raise UploadError(422, f"overlay must be true or false, got {raw[:40]!r}")


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from the ``swagger-ui-bundle`` package when installed (no CDN), else FastAPI's."""
    try:
        import swagger_ui_bundle
    except ImportError:
        from fastapi.openapi.docs import get_swagger_ui_html

        @app.get("/docs", include_in_schema=False)
        async def docs_cdn() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="vision-tl serve: API")
        return
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    if "swagger-ui-4" in str(swagger_ui_bundle.swagger_ui_path):  # Swagger UI 4 renders OpenAPI 3.0 only
        app.openapi_version = "3.0.3"  # (these routes use nothing of 3.1)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="vision-tl serve: API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _add_routes(app: FastAPI, service: Service) -> None:
    config = service.config

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                            "Cache-Control": "no-cache"})

    @app.get("/health", summary="200 once the model is loaded, 503 before")
    async def health() -> JSONResponse:
        model = service.model
        if model is None:
            body = {"status": "error" if service.load_error else "loading", "error": service.load_error}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})
        return JSONResponse({"status": "ok", "model": model.path.name, "sha256": model.sha256,
                             "classes": model.classes, "multi_label": model.multi_label,
                             "backend": model.backend, "auth": bool(config.api_key)})

    @app.post("/predict", summary="classify one image (form field `file`, or the raw bytes as the body)",
              openapi_extra={"requestBody": _IMAGE_BODY, "parameters": [_TOP_K]})
    async def predict(request: Request) -> JSONResponse:
        _check_auth(request, service)
        model, batcher = service.ready()
        top_k = parse_top_k(request.query_params.get("top_k"), len(model.classes))
        with batcher.admit(1):  # refused before reading the body when the queue is full
            body = await read_body(request.headers, request.stream(), config.max_upload_bytes)
            (upload,) = read_uploads(body, request.headers.get("content-type", ""), "file")
            probs = await service.classify(upload)
        return JSONResponse(result_json(model, probs, top_k))

    @app.post("/predict/batch", summary="classify several images (multipart field `files`, in upload order)",
              openapi_extra={"requestBody": _BATCH_BODY, "parameters": [_TOP_K]})
    async def predict_batch(request: Request) -> JSONResponse:
        _check_auth(request, service)
        model, batcher = service.ready()
        top_k = parse_top_k(request.query_params.get("top_k"), len(model.classes))
        body = await read_body(request.headers, request.stream(), config.max_upload_bytes)
        uploads = read_uploads(body, request.headers.get("content-type", ""), "files", many=True)

        async def one(upload: Any) -> dict[str, Any]:
            try:
                check_part(upload)
                return result_json(model, await service.classify(upload), top_k)
            except UploadError as e:
                return {"error": e.message}

        with batcher.admit(len(uploads)):
            return JSONResponse(list(await asyncio.gather(*(one(u) for u in uploads))))

    @app.post("/cam", summary="Grad-CAM heatmap of one image as an RGBA PNG (alpha = evidence)",
              openapi_extra={"requestBody": _IMAGE_BODY, "parameters": [_TARGET, _OVERLAY]},
              response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def cam(request: Request) -> Response:
        _check_auth(request, service)
        model, batcher = service.ready()
        target = _parse_target(request.query_params.get("target"), model.classes)
        with batcher.admit(1):
            body = await read_body(request.headers, request.stream(), config.max_upload_bytes)
            (upload,) = read_uploads(body, request.headers.get("content-type", ""), "file")
            png = await service.cam(upload, target, _flag(request.query_params.get("overlay")))
        return Response(png, media_type="image/png")

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)")
    async def metrics() -> Response:
        if service.batcher is not None:
            service.metrics.queue_depth.set(service.batcher.pending)
        text, ctype = service.metrics.render()
        return Response(text, media_type=ctype)


def create_app(model: str | Path | ServeConfig, *, loader: Loader | None = None,
               on_load_error: Callable[[BaseException], None] | None = None, preload: bool = False,
               **options: Any) -> FastAPI:
    """The ASGI app serving ``model`` (a ``.vtl`` path, or a ``ServeConfig``); ``options`` are ``ServeConfig``'s.

    The model loads in a background thread once the app starts (``/health`` answers 503 until then).
    Run it with any ASGI server (``uvicorn.run(create_app("model.vtl"))``) or mount it in your own app.

    Args:
        model: the ``.vtl`` file, or a complete ``ServeConfig``.
        loader: builds the ``ServedModel`` from the config (default: ``load_learner`` through
            ``vision_tl.serve.model.load_model``).
        on_load_error: called with the exception when loading fails (``serve`` stops the server).
        preload: load during start-up, before the first connection is accepted (``serve(workers=N)``
            does, so that no process answers 503 while another is ready); default: in the background.
        **options: ``backend``, ``precision``, ``max_batch``, ``max_wait_ms``, ``max_upload_mb``,
            ``max_queue``, ``timeout_s``, ``api_key``, ``cors_origins``, ``decode_threads``, ``num_threads``.
    """
    config = model if isinstance(model, ServeConfig) else ServeConfig(model=Path(model), **options)
    if isinstance(model, ServeConfig) and options:
        raise ValueError(f"pass options in the ServeConfig, not beside it (got {sorted(options)})")
    service = Service(config, loader, on_load_error)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start_loading()
        if preload:
            await service.wait_loaded()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(title="vision-tl serve", version=_version(),
                  description=f"Image classification with `{config.model.name}`: `POST /predict` an image.",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.service = service

    _install_error_handlers(app)
    _add_routes(app, service)
    _mount_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(_StartLoading, service=service)
    app.add_middleware(AccessLog, metrics=service.metrics)
    return app


class _StartLoading:
    """Start loading on the first request too: an app mounted in another one does not get its lifespan run."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.service.start_loading()
        await self.app(scope, receive, send)


def _version() -> str:
    from .. import __version__

    return __version__
