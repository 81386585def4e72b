"""The new classifier head put on a pretrained body (fastai's ``create_head``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class AdaptiveConcatPool2d(nn.Module):
    """Concatenate adaptive average and max pooling: twice the channels, more signal for the head."""

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.ap = nn.AdaptiveAvgPool2d(size)
        self.mp = nn.AdaptiveMaxPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


class SigmoidRange(nn.Module):
    """``sigmoid(x)`` scaled to ``(low, high)``: a regression head whose outputs stay in range (fastai)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if not low < high:
            raise ValueError(f"y_range must be (low, high) with low < high, got ({low!r}, {high!r})")
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


def lin_bn_drop(n_in: int, n_out: int, bn: bool = True, p: float = 0.0, act: nn.Module | None = None) -> list[nn.Module]:
    """BatchNorm1d → Dropout → Linear (no bias after a BatchNorm) → activation, as fastai's LinBnDrop."""
    layers: list[nn.Module] = []
    if bn:
        layers.append(nn.BatchNorm1d(n_in))
    if p:
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(n_in, n_out, bias=not bn))
    if act is not None:
        layers.append(act)
    return layers


def create_head(
    nf: int,
    n_out: int,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    first_bn: bool = True,
    bn_final: bool = False,
    y_range: tuple[float, float] | None = None,
) -> nn.Sequential:
    """Build a head for ``nf``-channel NCHW features and ``n_out`` classes.

    Pooling (concat avg+max by default) → flatten → [BN → dropout → linear → ReLU] per hidden
    size in ``lin_ftrs`` (default ``[512]``) → BN → dropout → linear to ``n_out``. A single ``ps``
    gives ``ps/2`` to hidden layers and ``ps`` to the last, as fastai does. Linear weights are
    Kaiming-normal initialised. ``y_range=(low, high)`` ends the head with ``SigmoidRange``.
    """
    if nf < 1 or n_out < 1:
        raise ValueError(f"create_head needs nf >= 1 and n_out >= 1, got nf={nf}, n_out={n_out}")
    if concat_pool:
        nf *= 2
    sizes = [nf, *([512] if lin_ftrs is None else list(lin_ftrs)), n_out]
    n_lin = len(sizes) - 1
    if isinstance(ps, (int, float)):
        ps_list = [ps / 2] * (n_lin - 1) + [ps]
    else:
        ps_list = list(ps)
        if len(ps_list) != n_lin:
            raise ValueError(f"ps must be one float or {n_lin} floats (one per linear layer), got {ps!r}")
    bns = [first_bn] + [True] * (n_lin - 1)
    layers: list[nn.Module] = [AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for i, (ni, no) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = nn.ReLU(inplace=True) if i < n_lin - 1 else None
        layers += lin_bn_drop(ni, no, bn=bns[i], p=ps_list[i], act=act)
    if bn_final:
        layers.append(nn.BatchNorm1d(sizes[-1], momentum=0.01))
    if y_range is not None:
        layers.append(SigmoidRange(*y_range))
    head = nn.Sequential(*layers)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return head
