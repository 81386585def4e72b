"""Plain helpers of the int8 tests (digits, a trained head, constants), imported by the test
modules and by ``conftest.py``'s fixtures; fixtures stay in ``conftest.py``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vision_tl.models.predict_step import prepare_batch

SIZE = 32


VOCAB = [str(d) for d in range(10)]


def digits(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 RGB ``(N, 3, size, size)`` and their labels, in a seeded random order."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    img = torch.from_numpy((x.reshape(-1, 1, 8, 8) * 255 / 16).astype(np.uint8)).repeat(1, 3, 1, 1)
    img = F.interpolate(img.float(), size=(size, size), mode="bilinear").round().clamp(0, 255).to(torch.uint8)
    order = np.random.default_rng(0).permutation(len(x))
    return img.numpy()[order], y[order]


def train_head(model: torch.nn.Module, spec, images: np.ndarray, labels: np.ndarray, steps: int = 100) -> None:
    """Fit ``model[1]`` (the head) on ``model[0]``'s features of ``images`` (uint8 NCHW); the body stays random."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread beats a contended pool on a shared machine
    try:
        torch.manual_seed(0)
        model.eval()
        with torch.no_grad():
            feats = model[0](prepare_batch(torch.from_numpy(images), spec, batch_tfms=True))
        head, y = model[1], torch.from_numpy(labels).long()
        opt = torch.optim.AdamW(head.parameters(), 3e-2)
        head.train()
        for _ in range(steps):
            b = torch.randperm(len(y))[:256]
            loss = F.cross_entropy(head(feats[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
