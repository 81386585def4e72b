"""Dynamic batching: concurrent requests gathered into one forward pass, behind a bounded queue.

Requests are admitted while fewer than ``max_queue`` images are in the service (decoding, waiting or
in the model); past that, ``Overloaded`` (the app answers 503 with ``Retry-After``) instead of
unbounded memory. One task takes the first waiting image, gathers more for at most ``max_wait_ms``
(up to ``max_batch``), and runs the batch in the single model thread, so the event loop never waits
on the model and the model never runs twice at once. Images of different sizes go in separate
forward passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["Batcher", "Overloaded"]


class Overloaded(Exception):
    """The queue is full (or a request waited past its timeout): answer 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class Batcher:
    """Gathers images into batches for ``forward`` (``list[(H, W, 3) uint8] -> (n, c) probabilities``).

    Args:
        forward: runs one batch; called in the model thread only.
        max_batch: most images in one forward pass.
        max_wait_ms: how long the first image of a batch waits for company.
        max_queue: most images admitted at once (decoding, queued or running).
        on_batch: called with each batch size (metrics).
    """

    def __init__(self, forward: Callable[[list[np.ndarray]], np.ndarray], max_batch: int = 32,
                 max_wait_ms: float = 5.0, max_queue: int = 256,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.forward, self.max_batch, self.max_wait = forward, max_batch, max_wait_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self.pending = 0
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="vision-tl-model")
        self._task: asyncio.Task | None = None

    @contextlib.contextmanager
    def admit(self, n: int = 1):
        """Hold ``n`` places in the queue for the block, or raise ``Overloaded`` at once."""
        if self.pending + n > self.max_queue:
            raise Overloaded(f"the server is busy ({self.pending} images in the queue, limit {self.max_queue}): "
                             "retry later", retry_after=1)
        self.pending += n
        try:
            yield
        finally:
            self.pending -= n

    async def submit(self, image: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """The probabilities of one decoded image, computed in some batch (within ``timeout`` seconds)."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((image, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise Overloaded(f"the prediction took longer than the timeout of {timeout:g} s", retry_after=2) from None

    async def run_in_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the model thread, between batches (Grad-CAM uses the same model)."""
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn, *args)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vision-tl-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._model_thread.shutdown(wait=True)

    async def _gather(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return [(img, fut) for img, fut in batch if not fut.done()]  # a timed-out request is not run

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            groups: dict[tuple[int, ...], list[tuple[np.ndarray, asyncio.Future]]] = {}
            for img, fut in batch:
                groups.setdefault(img.shape, []).append((img, fut))
            for group in groups.values():
                if self.on_batch is not None:
                    self.on_batch(len(group))
                try:
                    probs = await self.run_in_model_thread(self.forward, [img for img, _ in group])
                except Exception as e:  # noqa: BLE001 - the error belongs to the requests of this batch
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), row in zip(group, probs):
                    if not fut.done():
                        fut.set_result(row)
