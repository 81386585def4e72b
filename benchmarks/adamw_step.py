"""One AdamW step over a model's parameters: torch's default, ``foreach=True`` and ``fused=True``.

Every tensor has a gradient (the unfrozen phase); the settings are the Learner's (fastai's betas and
eps, weight decay only on tensors with ndim >= 2). Median of ``--steps`` steps after 3 warm-up steps.

    python benchmarks/adamw_step.py --arch resnet18
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def step_ms(params: list, steps: int, **kwargs: bool) -> float:
    import torch

    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5, **kwargs)
    for _ in range(3):
        opt.step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18", help="a torchvision model name")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    import torch
    import torchvision

    torch.manual_seed(0)
    params = list(getattr(torchvision.models, args.arch)(num_classes=2).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    out = {name: round(step_ms(params, args.steps, **kw), 2)
           for name, kw in (("default", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True}))}
    print(f"AdamW step, {args.arch} ({sum(p.numel() for p in params) / 1e6:.1f}M parameters), "
          f"{torch.get_num_threads()} threads: " + ", ".join(f"{k} {v:.1f} ms" for k, v in out.items()))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
