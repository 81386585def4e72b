"""The README test's fast mode (tests/test_readme.py puts this folder first on PYTHONPATH; nothing else does).

The README's code and commands run unchanged; only the amount of arithmetic shrinks: every item transform
works at most at 32 px (the README's ``Resize(224)`` costs 10-20 s per batch on two CPU cores) and
``lr_find`` tries at most 10 learning rates. Everything else (data loading, pretrained weights from the
cache, training, export, loading, the CLI) is the real code path.
"""

from vision_tl.data import item_tfms
from vision_tl.train import learner

_MAX_SIZE = 32
_MAX_LR_FIND_IT = 10
_item_init = item_tfms.ItemTransform.__init__
_run_lr_find = learner.run_lr_find


def _small_item_init(self, size):
    h, w = item_tfms._as_size(size)
    _item_init(self, (min(h, _MAX_SIZE), min(w, _MAX_SIZE)))


def _short_lr_find(learn, start_lr=1e-7, end_lr=10, num_it=100, *args, **kwargs):
    return _run_lr_find(learn, start_lr, end_lr, min(num_it, _MAX_LR_FIND_IT), *args, **kwargs)


item_tfms.ItemTransform.__init__ = _small_item_init
learner.run_lr_find = _short_lr_find
