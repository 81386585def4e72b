"""What a request asks of the model: load it once (in the background), classify uploads, draw Grad-CAM.

``Service`` owns the loaded model, the decode thread pool and the ``Batcher``. It turns every bad
upload into an ``UploadError`` naming the file, so the routes only format answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .access import log_event
from .batching import Batcher, Overloaded
from .config import ServeConfig
from .metrics import Metrics
from .model import ServedModel, load_model
from .uploads import Upload, UploadError, check_not_empty, display_name

__all__ = ["Service", "Loader", "result_json"]

Loader = Callable[[ServeConfig], ServedModel]


def _default_loader(config: ServeConfig) -> ServedModel:
    return load_model(config.model, config.backend, config.precision, config.num_threads)


def result_json(model: ServedModel, probs: np.ndarray, top_k: int) -> dict[str, Any]:
    """The ``/predict`` answer for one row of probabilities."""
    classes = model.classes
    as_dict = {c: float(p) for c, p in zip(classes, probs)}
    if model.multi_label:
        return {"labels": [c for c, p in zip(classes, probs) if p > model.thresh], "probs": as_dict}
    order = np.argsort(-probs, kind="stable")[:top_k]  # stable: ties resolve like argmax, to the first
    best = int(order[0])
    return {"label": classes[best], "index": best, "probs": as_dict,
            "top_k": [[classes[i], float(probs[i])] for i in order]}


def _image_error(upload: Upload, e: Exception) -> UploadError:
    reason = str(getattr(e, "reason", None) or e).strip().splitlines()[0][:300]
    status = 413 if "decompression bomb" in reason else 400
    return UploadError(status, f"{display_name(upload.filename)}: {reason}")


class Service:
    """The model behind the routes; ``model`` is None until ``load`` has finished."""

    def __init__(self, config: ServeConfig, loader: Loader | None = None,
                 on_load_error: Callable[[BaseException], None] | None = None) -> None:
        self.config, self.metrics = config, Metrics()
        self.loader, self.on_load_error = loader or _default_loader, on_load_error
        self.model: ServedModel | None = None
        self.batcher: Batcher | None = None
        self.load_error: str | None = None
        self._decoder = ThreadPoolExecutor(config.threads_for_decoding, thread_name_prefix="vision-tl-decode")
        self._load_task: asyncio.Task | None = None

    def start_loading(self) -> None:
        """Start loading in a thread (idempotent): the server answers ``/health`` 503 meanwhile."""
        if self._load_task is None:
            self._load_task = asyncio.get_running_loop().create_task(self._load(), name="vision-tl-load")

    async def wait_loaded(self) -> None:
        """Wait for the load started by ``start_loading``; raise ``RuntimeError`` if it failed."""
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        if self.load_error:
            raise RuntimeError(f"cannot serve {str(self.config.model)!r}: {self.load_error}")

    async def _load(self) -> None:
        try:
            model = await asyncio.to_thread(self.loader, self.config)
        except Exception as e:  # noqa: BLE001 - reported by /health and the start-up log, then the server stops
            self.load_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            log_event("load_failed", model=str(self.config.model), error=self.load_error)
            if self.on_load_error is not None:
                self.on_load_error(e)
            return
        batcher = Batcher(model.forward, self.config.max_batch, self.config.max_wait_ms, self.config.max_queue,
                          on_batch=self.metrics.batch_size.observe)
        batcher.start()
        self.batcher, self.model = batcher, model
        self.metrics.model_loaded.set(1)
        log_event("model_loaded", model=str(model.path), sha256=model.sha256, backend=model.backend,
                  classes=model.classes, multi_label=model.multi_label)

    async def close(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        self._decoder.shutdown(wait=False, cancel_futures=True)

    def ready(self) -> tuple[ServedModel, Batcher]:
        """The model and batcher, or ``Overloaded`` (503) while loading."""
        if self.model is None or self.batcher is None:
            why = f"the model failed to load ({self.load_error})" if self.load_error else "the model is loading"
            raise Overloaded(f"{why}: retry later", retry_after=2)
        return self.model, self.batcher

    async def _decode(self, model: ServedModel, upload: Upload) -> np.ndarray:
        check_not_empty(upload)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._decoder, model.decode, upload.data)
        except (ValueError, OSError) as e:  # ImageError is a ValueError
            raise _image_error(upload, e) from None

    async def classify(self, upload: Upload) -> np.ndarray:
        """The probabilities of one upload (decoded in the thread pool, predicted in some batch)."""
        model, batcher = self.ready()
        image = await self._decode(model, upload)
        self.metrics.queue_depth.set(batcher.pending)
        return await batcher.submit(image, self.config.timeout_s)

    async def cam(self, upload: Upload, target: str | int | None, overlay: bool = False) -> bytes:
        """The Grad-CAM PNG of one upload, computed in the model thread."""
        model, batcher = self.ready()
        await self._decode(model, upload)  # bad images answered as for /predict
        try:
            return await asyncio.wait_for(batcher.run_in_model_thread(model.cam_png, upload.data, target, overlay),
                                          self.config.timeout_s)
        except asyncio.TimeoutError:
            raise Overloaded(f"Grad-CAM took longer than the timeout of {self.config.timeout_s:g} s", 2) from None
        except (ValueError, TypeError, RuntimeError, NotImplementedError, AttributeError) as e:
            raise UploadError(501, f"Grad-CAM is not available for this model ({type(e).__name__}: {e})") from None
