"""In-memory DataLoaders stand-in for fast Learner tests (same iteration contract as TfmdDL)."""

from __future__ import annotations

import torch


class TinyDL:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int, shuffle: bool, seed: int = 0) -> None:
        self.x, self.y, self.bs, self.train, self.seed, self.epoch = x, y, bs, shuffle, seed, 0
        self.device = torch.device("cpu")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.x) + self.bs - 1) // self.bs

    def __iter__(self):
        n = len(self.x)
        if self.train:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        for i in range(0, n, self.bs):
            j = idx[i:i + self.bs]
            yield self.x[j].to(self.device), self.y[j].to(self.device)


class TinyDLs:
    """``c`` classes of 3x``size``x``size`` images whose class sets the mean of one channel."""

    def __init__(self, n: int = 48, c: int = 3, size: int = 32, bs: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % c
        x = torch.rand(n, 3, size, size, generator=g) * 0.5
        x[torch.arange(n), y % 3] += 0.5
        nv = n // 4
        self.train = TinyDL(x[nv:], y[nv:], bs, True, seed)
        self.valid = TinyDL(x[:nv], y[:nv], bs, False, seed)
        self.c, self.bs, self.vocab, self.batch_tfms, self.path = c, bs, [str(i) for i in range(c)], [], None
        self.device = torch.device("cpu")

    def to(self, device):
        self.device = self.train.device = self.valid.device = torch.device(device)
        return self
