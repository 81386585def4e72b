"""``learn.to_fp16()`` on a CPU: one training step before (float16 autocast, forced) and after (the default:
float32 where the CPU has no fast half precision), against plain float32 (issue 21).

Default: resnet50, bs 32, 64 px, random init; each variant is timed ``--steps`` times after a
warm-up step, medians reported, variants interleaved. Prints ``uptime`` before and after.

    flock /tmp/vtl-bench.lock python benchmarks/cpu_fp16.py
    python benchmarks/cpu_fp16.py --arch resnet18 --steps 2     # a smaller stand-in
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import warnings

import torch


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "?"


def learner(arch: str, bs: int, size: int, mode: str):
    from vision_tl import vision_learner
    from vision_tl.train.precision import cpu_flags  # noqa: F401 - the flags decide "after"

    class DLs:  # one fixed batch: the step, not the data pipeline, is measured
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(bs, 3, size, size, generator=g)
            self.y = torch.randint(0, 10, (bs,), generator=g)
            self.vocab, self.c, self.path, self.batch_tfms, self.item_tfms = [str(i) for i in range(10)], 10, ".", [], []
            self.train = self.valid = [(self.x, self.y)]

        def to(self, device):
            return self

    learn = vision_learner(DLs(), arch, pretrained=False, device="cpu")
    if mode == "fp16_forced":
        learn.to_fp16(force=True)
    elif mode == "to_fp16":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learn.to_fp16()
    return learn


def step_time(learn, x, y) -> float:
    learn.model.train()
    opt = torch.optim.AdamW(learn.model.parameters(), 1e-3)
    amp = [c for c in learn.cbs if type(c).__name__ == "MixedPrecision"]
    t = time.perf_counter()
    ctx = torch.autocast("cpu", dtype=amp[0].dtype) if amp else torch.autocast("cpu", enabled=False)
    with ctx:
        loss = torch.nn.functional.cross_entropy(learn.model(x).float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    from vision_tl.train.precision import cpu_flags, fast_autocast_dtype

    modes = ["fp32", "fp16_forced", "to_fp16"]
    learners = {m: learner(args.arch, args.bs, args.size, m) for m in modes}
    x, y = learners["fp32"].dls.x, learners["fp32"].dls.y
    out: dict = {"uptime_before": uptime(), "arch": args.arch, "bs": args.bs, "size": args.size,
                 "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                 "flags": sorted(f for f in cpu_flags() if "bf16" in f or "fp16" in f or f.startswith("amx")),
                 "to_fp16_autocasts_to": str(fast_autocast_dtype(torch.device("cpu"), torch.float16)),
                 "times": {m: [] for m in modes}}
    for m in modes:
        step_time(learners[m], x, y)  # warm-up
    for _ in range(args.steps):
        for m in modes:
            out["times"][m].append(step_time(learners[m], x, y))
    out["uptime_after"] = uptime()
    out["median_s"] = {m: statistics.median(v) for m, v in out["times"].items()}
    out["forced_fp16_over_fp32"] = out["median_s"]["fp16_forced"] / out["median_s"]["fp32"]
    out["to_fp16_over_fp32"] = out["median_s"]["to_fp16"] / out["median_s"]["fp32"]
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
