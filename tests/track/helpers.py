"""Small helpers of the tracking tests (a tiny model, small DataLoaders, the Recorder's columns)."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def tiny_model(c: int = 3) -> nn.Sequential:
    """A conv + BatchNorm + linear model: fast, and with BatchNorm buffers for EMA to average."""
    from vision_tl.models.heads import create_head

    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    return nn.Sequential(body, create_head(8, c, lin_ftrs=[16]))


def small_dls(folder: Path, size: int = 16, bs: int = 4):
    from vision_tl import ImageDataLoaders, Resize

    return ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=7, item_tfms=Resize(size), bs=bs,
                                        num_workers=0, device="cpu")


def epoch_values(run: object, name: str) -> list[float]:
    """The Recorder's ``name`` column over every fit of the run, in order."""
    return [row[f["columns"].index(name)] for f in run.fits for row in f["rows"]]
