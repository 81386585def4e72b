"""``DistributedTrainer``: the callback that trains a Learner with ``DistributedDataParallel``.

The process-group helpers it relies on (ranks, barriers, gathering, broadcasting) are in
``distributed.py``, which imports nothing back; this module holds the callbacks (the trainer, and
``DistributedGatherPreds``, the all-gather version of ``GatherPreds`` that it puts in place of the
learner's own) and ``distrib_ctx``, the usual way to add the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler

from .callbacks import Callback
from .distributed import (
    DistEnv,
    broadcast_buffers,
    broadcast_int,
    check_same_split,
    distributed_device,
    gather_in_order,
    is_dist_initialized,
    is_main_process,
    setup_distributed,
    teardown_distributed,
)
from .gather import GatherPreds
from .progress import ProgressCallback
from .tracking import CSVLogger

_OUTPUT_CBS = (ProgressCallback, CSVLogger)  # what only rank 0 runs


class DistributedGatherPreds(GatherPreds):
    """``GatherPreds`` for a validation set sharded over ranks: every rank ends with all predictions,
    targets (and inputs) in dataset order, without the padding duplicates, and the loss over them."""

    def __init__(self, valid_dl: Any) -> None:
        super().__init__()
        self.valid_dl = valid_dl

    def combine(self) -> tuple:
        preds, targs, inputs, loss = super().combine()
        if self.learn.dl is not self.valid_dl or targs is None:  # another loader: not sharded
            return preds, targs, inputs, loss
        n = len(self.valid_dl.dataset)
        preds, targs = gather_in_order(preds, n), gather_in_order(targs, n)
        if inputs is not None:
            inputs = gather_in_order(inputs, n)
        with torch.no_grad():
            loss = float(self.learn.loss_func(preds, targs).float())
        return preds, targs, inputs, loss


class DistributedTrainer(Callback):
    """Train with ``DistributedDataParallel`` across the processes torchrun started.

    For each ``fit`` the model is wrapped in DDP (rebuilt every fit, so the parameters that
    ``freeze``/``unfreeze`` switch on or off are always right) and unwrapped at the end. The
    training set is sharded by a ``DistributedSampler`` (one seed for all ranks, re-seeded every
    epoch through ``dl.set_epoch``); the validation set by an unshuffled one whose predictions are
    gathered back into dataset order, without the padding duplicates, before the loss and metrics
    are computed. BatchNorm statistics are copied from rank 0 before validation and after fit.
    On ranks other than 0 the progress bar, epoch table and CSV log are switched off during fit.

    Prefer ``learn.distrib_ctx()`` (or :func:`distrib_ctx`), which also starts the process group
    and puts each rank on its own GPU.

    Args:
        sync_bn: convert BatchNorm layers to ``SyncBatchNorm`` (CUDA only).
        find_unused_parameters: passed to DDP, for models whose forward skips some parameters.
        **ddp_kwargs: any other ``DistributedDataParallel`` argument.
    """

    order = -20  # wrap the model before the other callbacks' before_fit, unwrap before their after_fit

    def __init__(self, sync_bn: bool = False, find_unused_parameters: bool = False, **ddp_kwargs: Any) -> None:
        self.sync_bn, self.find_unused_parameters, self.ddp_kwargs = sync_bn, find_unused_parameters, ddp_kwargs
        self._sharded: dict[int, tuple[Any, Any, int | None]] = {}  # id(dl) -> (dl, old sampler, old seed)
        self._valid_dl: Any = None
        self._muted: list[Callback] = []
        self._muted_at_fit = False
        self._own_gather: GatherPreds | None = None  # the learner's GatherPreds while ours stands in

    # -- data -----------------------------------------------------------------------------------
    def shard_loaders(self) -> None:
        """Give the train and valid DataLoaders distributed samplers (idempotent)."""
        if not is_dist_initialized():
            raise RuntimeError(
                "DistributedTrainer needs a process group: launch with torchrun and use learn.distrib_ctx() "
                "(or call setup_distributed() first)"
            )
        world, rank = dist.get_world_size(), dist.get_rank()
        dls = self.learn.dls
        train, valid = dls.train, dls.valid
        if not self._sharded:
            check_same_split(train.dataset, valid.dataset, device=self.learn.device)
        if id(train) not in self._sharded:
            seed = broadcast_int(int(getattr(train, "seed", 0)), device=self.learn.device)
            sampler = DistributedSampler(train.dataset, world, rank, shuffle=True, seed=seed)
            self._sharded[id(train)] = (train, train.sampler, getattr(train, "seed", None))
            train.sampler = sampler
            if getattr(train, "seed", None) is not None:
                train.seed = seed + rank  # every rank draws its own augmentations
            if len(train) == 0:
                raise ValueError(
                    f"each of the {world} processes gets {len(sampler)} training items, fewer than bs={train.bs} "
                    "with drop_last: use a smaller bs"
                )
        if id(valid) not in self._sharded:
            self._sharded[id(valid)] = (valid, valid.sampler, None)
            valid.sampler = DistributedSampler(valid.dataset, world, rank, shuffle=False)
        self._valid_dl = valid
        self._swap_gather(valid)

    def _swap_gather(self, valid: Any) -> None:
        """Put a ``DistributedGatherPreds`` for ``valid`` in place of the learner's ``GatherPreds``."""
        learn = self.learn
        current = getattr(learn, "gather_preds", None)
        if isinstance(current, DistributedGatherPreds) and current.valid_dl is valid:
            return
        if self._own_gather is None:
            self._own_gather = current
        if current is not None:
            learn.remove_cb(current)
        learn.add_cb(DistributedGatherPreds(valid))

    def unshard_loaders(self) -> None:
        """Put the DataLoaders' own samplers (and seeds) back."""
        for dl, sampler, seed in self._sharded.values():
            dl.sampler = sampler
            if seed is not None:
                dl.seed = seed
        self._sharded, self._valid_dl = {}, None
        self.learn.remove_cb(DistributedGatherPreds)
        if self._own_gather is not None:
            self.learn.add_cb(self._own_gather)
            self._own_gather = None

    # -- events ---------------------------------------------------------------------------------
    def before_fit(self) -> None:
        self.shard_loaders()
        learn = self.learn
        model = learn.raw_model
        if self.sync_bn:
            if learn.device.type != "cuda":
                raise ValueError(f"sync_bn=True needs CUDA devices; this learner trains on {learn.device}")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # shares the parameters
        cuda = learn.device.type == "cuda"
        ids = [learn.device.index if learn.device.index is not None else torch.cuda.current_device()] if cuda else None
        learn.model = DDP(model, device_ids=ids, find_unused_parameters=self.find_unused_parameters,
                          **self.ddp_kwargs)
        self._muted_at_fit = not self._muted
        self.mute_outputs()  # for callbacks added with fit(cbs=...); their before_fit has already run

    def after_loss(self) -> None:
        """Average the logged training loss over ranks: the global batch's loss, the same everywhere.

        Only ``learn.loss`` (what is recorded and checked for NaN) changes, not the loss that is
        back-propagated; every rank then stops together on a NaN instead of leaving the others
        waiting in a collective.
        """
        if self.learn.training:
            loss = self.learn.loss.detach().float().clone()
            dist.all_reduce(loss)
            self.learn.loss = loss / dist.get_world_size()

    def before_validate(self) -> None:
        broadcast_buffers(self.learn.raw_model)

    def after_fit(self) -> None:
        learn = self.learn
        broadcast_buffers(learn.raw_model)
        learn.model = learn.raw_model
        if self._muted_at_fit:
            self.unmute_outputs()

    # -- rank-0 output --------------------------------------------------------------------------
    def mute_outputs(self) -> None:
        """On ranks other than 0, take out the callbacks that print or write logs (progress, CSV)."""
        if is_main_process():
            return
        learn = self.learn
        muted = [c for c in learn.cbs if isinstance(c, _OUTPUT_CBS) and c not in self._muted]
        for c in muted:
            learn.remove_cb(c)
        self._muted += muted

    def unmute_outputs(self) -> None:
        """Put back what :meth:`mute_outputs` took out."""
        for c in self._muted:
            self.learn.add_cb(c)
        self._muted = []


# ---------------------------------------------------------------- the context manager
@contextmanager
def distrib_ctx(
    learn: Any, sync_bn: bool = False, find_unused_parameters: bool = False, backend: str | None = None,
    timeout_s: float = 1800.0, **ddp_kwargs: Any,
) -> Iterator[Any]:
    """Train ``learn`` data-parallel inside the block when launched by torchrun; else do nothing.

    Starts the process group if needed (and ends it on exit if it started it), moves a CUDA
    learner to its ``LOCAL_RANK`` GPU, and adds a :class:`DistributedTrainer` for the block.

    Example::

        with learn.distrib_ctx():      # torchrun --nproc_per_node=4 train.py
            learn.fine_tune(3)
    """
    env = DistEnv.from_env()
    if not env.is_distributed:
        yield learn
        return
    started = not is_dist_initialized()
    setup_distributed(backend, timeout_s)
    if learn.device.type == "cuda":
        _move_learner(learn, distributed_device(env))
    cb = DistributedTrainer(sync_bn=sync_bn, find_unused_parameters=find_unused_parameters, **ddp_kwargs)
    learn.add_cb(cb)
    ok = False
    try:
        cb.shard_loaders()
        cb.mute_outputs()
        yield learn
        ok = True
    finally:
        cb.unmute_outputs()
        cb.unshard_loaders()
        learn.remove_cb(cb)
        if started:
            teardown_distributed(wait=ok)


def _move_learner(learn: Any, device: torch.device) -> None:
    """Put model, optimizer state and DataLoaders on ``device`` (each rank its own GPU)."""
    if learn.device == device:
        return
    learn.device = device
    learn.raw_model.to(device)
    if hasattr(learn.dls, "to"):
        learn.dls.to(device)
    for state in (learn.opt.state.values() if learn.opt is not None else []):
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and v.device.type == "cuda":
                state[k] = v.to(device)
