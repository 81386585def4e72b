"""Data-parallel training on torch.distributed (DDP) when a script is launched by ``torchrun``.

The same notebook code runs on one device or on many: ``torchrun`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup_distributed` reads them and joins
the process group (NCCL on CUDA, gloo on CPU). ``DistributedTrainer`` (the callback) and
``distrib_ctx`` (the context manager that adds it), both in ``distributed_callback.py``, wrap the
model in ``DistributedDataParallel`` for each ``fit``, shard the training set with a
``DistributedSampler`` re-seeded every epoch, and gather validation predictions from all ranks so
that losses and metrics equal a single-process computation. Files (checkpoints, exports, logs) are
written by rank 0 only; :func:`rank0_first` and :func:`barrier`
order the rest. This module imports nothing from ``vision_tl`` (the bottom of the stack), so every
callback may import its rank helpers.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a distributed launch, as read from torchrun's environment."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def is_distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress (global rank 0)."""
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DistEnv:
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/... (torchrun's variables); validate them.

        Without ``WORLD_SIZE`` (a plain ``python train.py``) this is a single process, rank 0.
        Raises ``ValueError`` naming the variable and the value when they are inconsistent.
        """
        env = os.environ if environ is None else environ
        world_size = _env_int(env, "WORLD_SIZE", 1, minimum=1)
        rank = _env_int(env, "RANK", 0, minimum=0)
        local_rank = _env_int(env, "LOCAL_RANK", rank if "RANK" in env else 0, minimum=0)
        local_world_size = _env_int(env, "LOCAL_WORLD_SIZE", world_size, minimum=1)
        if rank >= world_size:
            raise ValueError(f"RANK must be < WORLD_SIZE ({world_size}), got RANK={rank}")
        if local_rank >= local_world_size:
            raise ValueError(
                f"LOCAL_RANK must be < LOCAL_WORLD_SIZE ({local_world_size}), got LOCAL_RANK={local_rank}"
            )
        addr = env.get("MASTER_ADDR") or None
        port = _env_int(env, "MASTER_PORT", 0, minimum=1) if env.get("MASTER_PORT") else None
        if world_size > 1 and (addr is None or port is None):
            missing = [k for k, v in (("MASTER_ADDR", addr), ("MASTER_PORT", port)) if v is None]
            raise ValueError(
                f"WORLD_SIZE={world_size} but {', '.join(missing)} is not set: launch with torchrun "
                "(python -m torch.distributed.run) or set MASTER_ADDR and MASTER_PORT"
            )
        return cls(rank, world_size, local_rank, local_world_size, addr, port)


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"environment variable {name} must be >= {minimum}, got {value}")
    return value


# ---------------------------------------------------------------- process group
def is_dist_initialized() -> bool:
    """True when a torch.distributed process group is up in this process."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank: from the process group when up, else from ``RANK`` (0 for a plain run)."""
    if is_dist_initialized():
        return dist.get_rank()
    return _env_int(os.environ, "RANK", 0, minimum=0)


def get_world_size() -> int:
    """Number of processes: from the process group when up, else from ``WORLD_SIZE`` (1)."""
    if is_dist_initialized():
        return dist.get_world_size()
    return _env_int(os.environ, "WORLD_SIZE", 1, minimum=1)


def is_main_process() -> bool:
    """True on global rank 0: the process that logs, shows progress and writes files."""
    return get_rank() == 0


def default_backend() -> str:
    """``"nccl"`` when CUDA (and NCCL) is available, else ``"gloo"`` (CPU)."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def setup_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistEnv:
    """Join the process group described by torchrun's environment; a no-op for a single process.

    On CUDA each process uses the GPU ``LOCAL_RANK``. Calling it again once the group is up is
    harmless (the existing group is kept).

    Args:
        backend: ``"nccl"``, ``"gloo"`` or None for :func:`default_backend`.
        timeout_s: how long collectives wait for a slow rank before failing.
    """
    env = DistEnv.from_env()
    if backend is not None and backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl', 'gloo' or None, got {backend!r}")
    if not env.is_distributed or is_dist_initialized():
        return env
    backend = backend or default_backend()
    device_id = None
    if backend == "nccl":
        n_gpus = torch.cuda.device_count()
        if env.local_rank >= n_gpus:
            raise ValueError(
                f"LOCAL_RANK={env.local_rank} but this machine has {n_gpus} CUDA device(s): "
                "use --nproc_per_node <= the number of GPUs"
            )
        torch.cuda.set_device(env.local_rank)
        device_id = torch.device("cuda", env.local_rank)
    dist.init_process_group(
        backend=backend,
        init_method="env://",  # MASTER_ADDR/PORT; under torchrun the agent's store is reused
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        device_id=device_id,
    )
    return env


def teardown_distributed(wait: bool = True) -> None:
    """Leave the process group; a no-op when none is up.

    ``wait`` first waits for the other ranks; pass False after an error, when they may never
    arrive (torchrun then stops the whole job instead of it hanging until the timeout).
    """
    if is_dist_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def distributed_device(env: DistEnv | None = None) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    env = env or DistEnv.from_env()
    if torch.cuda.is_available():
        return torch.device("cuda", env.local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


# ---------------------------------------------------------------- ordering and rank-0 guards
def barrier() -> None:
    """Wait until every rank reaches this point; a no-op for a single process."""
    if is_dist_initialized() and dist.get_world_size() > 1:
        dist.barrier()


@contextmanager
def rank0_first(local: bool = False) -> Iterator[None]:
    """Run the body on rank 0 first, then on the other ranks (e.g. a download, then reading it).

    With ``local=True`` the first process of each machine (``LOCAL_RANK`` 0) goes first: use it
    when every machine has its own disk.

    Example::

        with rank0_first():
            path = untar_data(URLs.PETS)
    """
    main = (DistEnv.from_env().local_rank == 0) if local else is_main_process()
    if not main:
        barrier()
    try:
        yield
    finally:
        if main:
            barrier()


def rank0_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Decorate a function that writes files: it runs on rank 0 only and all ranks wait for it.

    Other ranks return None. The barrier afterwards means a file written by rank 0 exists for
    every rank once the call returns.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        result = fn(*args, **kwargs) if is_main_process() else None
        barrier()
        return result

    return wrapper


# ---------------------------------------------------------------- gathering predictions
def interleave_shards(shards: Sequence[torch.Tensor], n: int | None = None) -> torch.Tensor:
    """Put per-rank shards back into dataset order, dropping padding past ``n`` items.

    A ``DistributedSampler`` without shuffling gives rank ``r`` the items ``r, r + W, r + 2W, ...``
    of the dataset padded (by repeating the first items) to the same length on every rank, so item
    ``j`` of rank ``r`` is item ``j * W + r`` of the padded list. Interleaving restores that order;
    the padding duplicates are then the items past ``n``.

    Args:
        shards: one tensor per rank, equal shapes, first dimension = items.
        n: how many items to keep (None keeps all).
    """
    if not shards:
        raise ValueError("shards must hold at least one tensor, got an empty sequence")
    stacked = torch.stack(list(shards), dim=1)  # (items per rank, W, ...)
    flat = stacked.reshape(-1, *stacked.shape[2:])
    return flat if n is None else flat[:n]


def all_gather_tensor(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``t`` (in rank order); first dimensions may differ between ranks.

    Differing lengths are padded for the collective and trimmed afterwards. With a single process
    this returns ``[t]``.
    """
    if not is_dist_initialized() or dist.get_world_size() == 1:
        return [t]
    home = t.device
    if dist.get_backend() == "nccl" and home.type != "cuda":  # NCCL only moves GPU tensors
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    t = t.contiguous()
    world = dist.get_world_size()
    n = torch.tensor([t.shape[0]], device=t.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    lengths = [int(s.item()) for s in sizes]
    longest = max(lengths)
    if t.shape[0] < longest:
        pad = t.new_zeros((longest - t.shape[0], *t.shape[1:]))
        t = torch.cat([t, pad])
    out = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [o[:length].to(home) for o, length in zip(out, lengths)]


def gather_in_order(t: torch.Tensor, n_left: int | None = None) -> torch.Tensor:
    """Gather one validation batch from all ranks into dataset order.

    Each rank holds its shard's next ``bs`` items (from an unshuffled ``DistributedSampler``), so
    together the ranks hold ``bs * W`` consecutive items of the (padded) dataset; ``n_left`` is
    how many real items remain from this batch on, which trims the padding on the last batch.
    """
    shards = all_gather_tensor(t)
    if len({s.shape[0] for s in shards}) > 1:
        raise RuntimeError(
            f"ranks hold batches of different sizes {[s.shape[0] for s in shards]}: the validation "
            "loader must use a padded DistributedSampler (see DistributedTrainer)"
        )
    return interleave_shards(shards, n_left)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``module``'s buffers (BatchNorm running stats) from rank ``src`` to every rank.

    DDP broadcasts buffers at the start of each training forward, so after the last batch every
    rank holds statistics updated with its own batch; this makes them identical again before
    validation and at the end of training.
    """
    if not is_dist_initialized() or dist.get_world_size() == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def broadcast_int(value: int, src: int = 0, device: torch.device | None = None) -> int:
    """Rank ``src``'s ``value`` on every rank (e.g. a shuffling seed drawn on rank 0)."""
    if not is_dist_initialized() or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(t, src=src)
    return int(t.item())


def check_same_split(train_ds: Any, valid_ds: Any, device: torch.device | None = None) -> None:
    """Raise ``ValueError`` on every rank unless all ranks hold the same train and valid items.

    Each process builds its own DataLoaders; an unseeded random split would differ between them,
    leaking validation images into training and making the gathered metrics meaningless.
    """
    if not is_dist_initialized() or dist.get_world_size() == 1:
        return
    parts = [getattr(ds, "items", None) for ds in (train_ds, valid_ds)]
    parts = [p if p is not None else range(len(ds)) for p, ds in zip(parts, (train_ds, valid_ds))]
    text = "\n".join(f"{len(p)}:" + "\n".join(map(str, p)) for p in parts)
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
    differs = torch.tensor([int(digest != broadcast_int(digest, device=device))], device=device)
    dist.all_reduce(differs)
    if differs.item():
        raise ValueError(
            f"the train/valid split differs between processes ({int(differs.item())} of "
            f"{dist.get_world_size()} differ from rank 0): build the DataLoaders with a fixed seed "
            "(e.g. valid_pct=0.2, seed=42) so that every process splits the same way"
        )
