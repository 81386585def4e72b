"""Batch prediction's decode/forward split: decode the next batch while the model runs on this one.

Decoding (JPEG draft decode, resize) and the forward pass both want the CPU. Run one after the
other and each leaves the cores the other could use idle (the forward's threads wait on each other
between layers; decoding is one thread of Python around C). Run them on the same cores at full
width and they evict each other's caches. So the split is explicit:

- ``decode_threads_for(cores)`` threads decode, in the main process, one batch ahead of the forward
  pass (PIL and OpenCV release the GIL; a thread costs no process start-up and no copy of the batch
  between processes, which is what made worker processes lose on 2 cores);
- the forward pass keeps its own pool (torch's, or the onnxruntime session's ``num_threads``).

Why the rule ``max(1, round(0.15 * cores))``: at the benchmark's shape (photo-sized JPEGs to 64 px,
resnet18) decoding is about 0.4 core-ms per image and the forward about 2.4 core-ms, so decoding
needs ~15% of the machine to keep pace. On 2 cores that is one thread overlapping a 2-thread
forward: the decode fills the forward's idle gaps instead of waiting for it. On 16 cores it is 2
threads: decoding 2 x ~2300 img/s is well ahead of a 16-thread forward of resnet18 at 64 px
(< 4000 img/s, since intra-op scaling of one batch-64 forward flattens past ~8 threads), and taking
two more threads from the forward would cost it less than a starved pipeline would. At 224 px the
forward costs ~12x more per image and decoding only ~2x (draft mode), so the same 1-2 threads are
more than enough. CUDA is different: the forward leaves the CPU free, so decoding gets worker
processes (``_default_workers`` in ``predict.py``) with pinned memory and non-blocking copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

DECODE_SHARE = 0.15  # fraction of the cores decoding needs to keep pace with the forward pass (see above)


def decode_threads_for(cores: int | None = None) -> int:
    """Threads that decode one batch ahead of the forward pass on a CPU with ``cores`` cores (default: this one)."""
    cores = cores or os.cpu_count() or 1
    return max(1, round(DECODE_SHARE * cores))


def prefetched_batches(
    load: Callable[[int], tuple[torch.Tensor | None, Exception | None]],
    n_items: int,
    bs: int,
    threads: int,
    collate: Callable[[list], tuple[torch.Tensor | None, Any]],
    pin_memory: bool = False,
) -> Iterator[torch.Tensor]:
    """The batches of items ``0..n_items-1``, decoded by ``threads`` threads one batch ahead of the consumer.

    ``load(i)`` returns ``(image, None)`` or ``(None, error)``; the first error of a batch is raised
    here, in order, so a bad file is named exactly as in the in-process path. ``pin_memory`` pins
    each batch (for non-blocking copies to a GPU).
    """
    starts = range(0, n_items, bs)

    def submit(pool: ThreadPoolExecutor, start: int) -> list[Future]:
        return [pool.submit(load, i) for i in range(start, min(start + bs, n_items))]

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vision_tl-decode")
    try:
        ahead = submit(pool, 0) if n_items else []
        for k in range(len(starts)):
            current = ahead
            ahead = submit(pool, starts[k + 1]) if k + 1 < len(starts) else []
            xb, err = collate([f.result() for f in current])
            if err is not None:
                raise err
            yield xb.pin_memory() if pin_memory else xb
    finally:  # also when the consumer stops early: drop the batch decoded ahead
        pool.shutdown(wait=True, cancel_futures=True)


def iter_batches(dataset: Sequence, bs: int, threads: int, collate: Callable, pin_memory: bool = False) -> Iterator:
    """``prefetched_batches`` over a map-style dataset of ``(image, error)`` pairs."""
    return prefetched_batches(dataset.__getitem__, len(dataset), bs, threads, collate, pin_memory)
