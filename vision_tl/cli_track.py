"""``vision-tl train``'s flags for watching and recording a run: trackers, a JSON log, quiet, EMA.

``add_train_args`` adds ``--track`` (repeatable: tensorboard, mlflow, wandb), ``--log-json FILE``,
``--quiet``, ``--log-every N`` and ``--ema [DECAY]``; ``train_callbacks`` turns them into callbacks,
and ``finish`` ends the runs once the model is exported. Where each tracker writes:

- tensorboard: ``--tb-dir`` (default ``runs/<date-time>``);
- mlflow: ``--mlflow-uri`` (default ``$MLFLOW_TRACKING_URI``, else MLflow's ``./mlruns``), experiment
  ``--experiment`` (default ``vision_tl``);
- wandb: project ``--experiment`` (default ``$WANDB_PROJECT``, else ``vision_tl``), ``$WANDB_MODE=offline``
  for no network.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .cli_data import CLIError

__all__ = ["TRACKERS", "add_train_args", "finish", "train_callbacks"]

TRACKERS = ("tensorboard", "mlflow", "wandb")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The tracking, logging and EMA flags of ``vision-tl train``."""
    p.add_argument("--track", action="append", choices=TRACKERS, default=[], metavar="TRACKER",
                   help="log the run to tensorboard, mlflow or wandb (repeat for several)")
    p.add_argument("--experiment", default=None, metavar="NAME",
                   help="MLflow experiment / W&B project (default: vision_tl, or $WANDB_PROJECT for wandb)")
    p.add_argument("--tb-dir", type=Path, default=None, metavar="DIR", help="TensorBoard folder (default: runs/<time>)")
    p.add_argument("--mlflow-uri", default=None, metavar="URI",
                   help="MLflow tracking store, e.g. sqlite:///mlflow.db (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    p.add_argument("--log-json", type=Path, default=None, metavar="FILE",
                   help="append one JSON object per epoch and a final summary to FILE (for machines)")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no epoch table (errors still shown)")
    p.add_argument("--log-every", type=int, default=None, metavar="N",
                   help="when the output is not a terminal: also a progress line every N batches")
    p.add_argument("--ema", type=float, nargs="?", const=0.999, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights (default decay 0.999), validate "
                   "and export it")


def train_callbacks(args: argparse.Namespace) -> list[Any]:
    """The callbacks the flags ask for; a tracker whose client is not installed is a CLIError saying what to install."""
    from vision_tl import EMACallback, JSONLogger, MissingTrackerError

    if args.log_every is not None and args.log_every < 1:
        raise CLIError(f"--log-every must be >= 1, got {args.log_every}")
    if args.ema is not None and not 0 <= args.ema < 1:
        raise CLIError(f"--ema DECAY must be in [0, 1), got {args.ema}")
    cbs: list[Any] = []
    try:
        for name in dict.fromkeys(args.track):  # each once, in the order given
            cbs.append(_tracker(name, args))
    except MissingTrackerError as e:
        raise CLIError(f"--track: {e}") from None
    if args.log_json is not None:
        cbs.append(JSONLogger(args.log_json.resolve()))
    if args.ema is not None:
        cbs.append(EMACallback(decay=args.ema))
    return cbs


def _tracker(name: str, args: argparse.Namespace) -> Any:
    from vision_tl import MLflowCallback, TensorBoardCallback, WandbCallback

    if name == "tensorboard":
        return TensorBoardCallback(None if args.tb_dir is None else args.tb_dir.resolve())
    if name == "mlflow":
        return MLflowCallback(tracking_uri=args.mlflow_uri, experiment=args.experiment or "vision_tl")
    return WandbCallback(project=args.experiment or os.environ.get("WANDB_PROJECT") or "vision_tl")


def finish(cbs: list[Any]) -> None:
    """End every tracker's run (after the export was logged)."""
    for cb in cbs:
        end = getattr(cb, "finish", None)
        if end is not None:
            end()
