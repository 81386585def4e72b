"""``fine_tune(1)`` on the CPU with 0 vs N DataLoader workers: do workers pay when the model trains on the CPU?

Each case builds the DataLoaders and a randomly initialised learner, then times ``fine_tune(1)``
(the loaders are built outside the timer); the two worker counts alternate, the first run of each
is a warm-up, and the medians of the rest are printed. This is the measurement behind
``default_num_workers(device)`` (BENCHMARKS.md, issue 19).

    python benchmarks/cpu_workers.py --repeats 4
    python benchmarks/cpu_workers.py --workers 0 4 --archs resnet18 --no-aug
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path


def run(root: Path, workers: int, aug: bool, arch: str, size: int, bs: int) -> float:
    import torchvision

    from vision_tl import (
        ImageDataLoaders,
        RandomResizedCrop,
        Resize,
        aug_transforms,
        error_rate,
        vision_learner,
    )

    kw = (dict(item_tfms=RandomResizedCrop(size, min_scale=0.35), batch_tfms=aug_transforms()) if aug
          else dict(item_tfms=Resize(size)))
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.2, seed=0, bs=bs, num_workers=workers, device="cpu", **kw)
    model = getattr(torchvision.models, arch) if hasattr(torchvision.models, arch) else arch  # else a timm name
    learn = vision_learner(dls, model, pretrained=False, metrics=error_rate, progress="silent")
    t = time.perf_counter()
    learn.fine_tune(1)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="image folder to (re)use; default: a temp dir")
    ap.add_argument("--n-per-class", type=int, default=128)
    ap.add_argument("--archs", nargs="+", default=["resnet18", "resnet10t"], help="torchvision or timm names")
    ap.add_argument("--workers", nargs=2, type=int, default=[0, 2], metavar=("A", "B"))
    ap.add_argument("--no-aug", action="store_true", help="only Resize (default: also RandomResizedCrop + aug_transforms)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=4, help="runs per worker count, the first one a warm-up")
    args = ap.parse_args(argv)
    from vision_tl import make_synthetic_folder

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "imgs"
        if not (root / "a").is_dir():
            make_synthetic_folder(root, classes=["a", "b"], n_per_class=args.n_per_class, seed=0, min_side=375,
                                  max_side=500)
        for arch in args.archs:
            for aug in [False] if args.no_aug else [False, True]:
                times: dict[int, list[float]] = {w: [] for w in args.workers}
                for r in range(args.repeats):
                    for w in args.workers if r % 2 == 0 else args.workers[::-1]:
                        times[w].append(run(root, w, aug, arch, args.size, args.bs))
                        gc.collect()  # the finished learner's workers stop now, not during the next run
                med = {w: round(statistics.median(v[1:] or v), 3) for w, v in times.items()}
                key = f"{arch} {'aug' if aug else 'resize'}"
                out[key] = med
                print(f"{key:24s} " + "  ".join(f"{w} workers {t:.3f} s" for w, t in med.items()), flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
