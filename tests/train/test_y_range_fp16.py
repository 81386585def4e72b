"""vision_learner(y_range=) and to_fp16 on a CPU-only machine (fastai vocabulary)."""

from __future__ import annotations

import torch

from vision_tl import vision_learner  # noqa: E402
from vision_tl.models.heads import SigmoidRange  # noqa: E402


def test_vision_learner_y_range_bounds_outputs_and_is_saved_in_the_config(tiny_dls):
    learn = vision_learner(tiny_dls(n=8, size=16), "resnet10t", pretrained=False, n_out=1, y_range=(-2, 2), device="cpu")
    assert isinstance(learn.model[1][-1], SigmoidRange)
    assert learn.model_config.y_range == (-2.0, 2.0)
    with torch.no_grad():
        out = learn.model.eval()(torch.randn(4, 3, 32, 32) * 100)
    assert out.abs().max() <= 2.0


def test_to_fp16_trains_on_the_cpu_without_error(tiny_dls):
    learn = vision_learner(tiny_dls(n=8, size=16, bs=4), "resnet10t", pretrained=False, device="cpu").to_fp16()
    learn.fit(1)
    assert torch.isfinite(torch.tensor(learn.val_results[0]))
    assert learn.to_fp32().scaler is None
