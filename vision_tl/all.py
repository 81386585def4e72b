"""``from vision_tl.all import *``: the public API plus what a fastai notebook takes for granted.

fastai's ``from fastai.vision.all import *`` also brings torch, ``nn``, ``F``, numpy as ``np``,
pandas as ``pd``, ``plt``, ``Path`` (with ``.ls()``), ``partial``, PIL's ``Image`` and the common
standard-library modules into a notebook; so does this module, explicitly (see ``__all__``).
``Image`` is PIL's module whose ``open`` adds fastai's ``to_thumb`` to the image it returns.
``Path`` is ``vision_tl.basics.Path``, a ``pathlib.Path`` subclass with ``.ls()`` (pathlib itself is
not patched). Importing this module imports torch, timm and torchvision: it is for notebooks and
scripts; library code imports from ``vision_tl`` directly.
"""

from __future__ import annotations

import collections
import functools
import glob
import io
import itertools
import json
import math
import operator
import os
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter, OrderedDict, defaultdict
from functools import partial, reduce
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import vision_tl as _vtl

from .basics import L, Path, first, tensor
from .data.pil_image import ImageModule

Image = ImageModule()  # PIL's Image module; Image.open(...) has fastai's to_thumb (Pillow is not patched)

# every public name of the package (the one list in vision_tl/__init__.py), bound here
_PUBLIC = [n for n in _vtl.__all__ if not n.startswith("__")]
for _name in _PUBLIC:
    globals()[_name] = getattr(_vtl, _name)
del _name

__all__ = [
    # the standard library a notebook reaches for
    "collections", "functools", "glob", "io", "itertools", "json", "math", "operator", "os", "random", "re",
    "shutil", "sys", "tempfile", "time", "warnings", "Counter", "OrderedDict", "defaultdict", "partial", "reduce",
    "SimpleNamespace",
    # the scientific stack
    "np", "pd", "plt", "torch", "nn", "F", "Tensor", "Image",
    # fastai's small helpers
    "L", "Path", "first", "tensor",
]
__all__ += sorted(set(_PUBLIC) - set(__all__))
