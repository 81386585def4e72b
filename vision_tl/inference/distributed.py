"""Batch prediction split across processes (``torchrun``, one or many machines).

``predict_batch(items, distributed=True)`` (or ``predict_distributed(predictor, items)``) under
``torchrun --nproc_per_node=N [--nnodes=M ...]``: rank ``r`` of ``W`` predicts the contiguous slice
``items[r*n//W : (r+1)*n//W]``, then every rank receives all the probabilities, in input order, equal
to a single-process run (same model, same preprocessing; each row only depends on its own image).
Files are read by the rank that predicts them: on several machines the paths must be readable on
each (a shared file system).

A file that cannot be read fails its own rank with its own error (an ``ImageError`` naming it), so it
is reported once, there; every other rank raises ``PeerFailed`` naming the rank, which the CLI turns
into a quiet non-zero exit. No rank waits forever: the exchange happens after each rank's work, failed
or not.

Without a process group and with ``WORLD_SIZE`` unset (a plain ``python``), it is a single-process
``predict_batch``. The process group is joined from torchrun's environment when it is not up yet
(gloo on the CPU, NCCL on CUDA).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..train.distributed import DistEnv, is_dist_initialized, setup_distributed

if TYPE_CHECKING:
    from .predict import Predictor

__all__ = ["PeerFailed", "predict_distributed", "shard_bounds"]


class PeerFailed(RuntimeError):
    """Another rank failed on one of its items (and reported it); ``.rank`` is that rank."""

    def __init__(self, rank: int, what: str) -> None:
        self.rank, self.what = rank, what
        super().__init__(f"rank {rank} failed ({what}); it reported the item")

    def __reduce__(self) -> tuple:
        return (type(self), (self.rank, self.what))


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous slice of ``n`` items (sizes differ by at most one)."""
    return rank * n // world_size, (rank + 1) * n // world_size


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: from the process group, joined from torchrun's environment if needed."""
    import torch.distributed as dist

    if not is_dist_initialized():
        env = DistEnv.from_env()
        if not env.is_distributed:
            return 0, 1
        setup_distributed()
    return dist.get_rank(), dist.get_world_size()


def predict_distributed(predictor: Predictor, items: Sequence[Any], **kwargs: Any) -> torch.Tensor:
    """All ``items``' probabilities ``(n, c)`` on every rank, each rank predicting its own slice.

    ``kwargs`` go to ``predictor.predict_batch`` (``bs``, ``num_workers``, ``progress``).
    Raises the rank's own error for an item it could not read, ``PeerFailed`` when another rank failed.
    """
    import torch.distributed as dist

    items = list(items)
    rank, size = world()
    if size == 1:
        return predictor.predict_batch(items, **kwargs)
    start, stop = shard_bounds(len(items), rank, size)
    error: BaseException | None = None
    try:
        probs = predictor.predict_batch(items[start:stop], **kwargs)
    except Exception as e:  # noqa: BLE001 - an unreadable image, or anything: the others must not wait forever
        error, probs = e, None
    gathered: list[Any] = [None] * size
    mine = (None if probs is None else probs.cpu().numpy(),
            None if error is None else f"{type(error).__name__}: {error}")
    dist.all_gather_object(gathered, mine)
    if error is not None:
        raise error
    for r, (_, failed) in enumerate(gathered):
        if failed is not None:
            raise PeerFailed(r, failed.split(":", 1)[0])
    return torch.cat([torch.from_numpy(p) for p, _ in gathered]) if gathered else torch.empty(0, predictor.c)
