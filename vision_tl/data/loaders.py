"""The data pipeline's import path: datasets, DataLoaders and the ``ImageDataLoaders`` factories.

The code lives in focused modules; this one re-exports their public names, so that
``from vision_tl.data.loaders import ImageDataLoaders`` keeps working:

- ``datasets.py``: ``ImageDataset`` (decode + item transforms, the bad-image policy), ``collate_uint8``
- ``tfmd_dl.py``: ``TfmdDL`` (seeded sampling, workers, batch transforms on the device)
- ``dataloaders.py``: ``DataLoaders`` (train + valid, ``test_dl``, ``show_batch``, ``summary``)
- ``factories.py``: ``ImageDataLoaders`` and its ``from_*`` factories
- ``show.py``: drawing a batch and the step-by-step pipeline summary
"""

from __future__ import annotations

from .dataloaders import DataLoaders
from .datasets import ImageDataset, collate_uint8
from .factories import ImageDataLoaders
from .tfmd_dl import TfmdDL, default_device, default_num_workers

__all__ = [
    "DataLoaders",
    "ImageDataLoaders",
    "ImageDataset",
    "TfmdDL",
    "collate_uint8",
    "default_device",
    "default_num_workers",
]
