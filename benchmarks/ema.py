"""EMA of weights on real data: scikit-learn's digits, the same run with and without ``EMACallback``.

The 1797 8x8 digit images are written once as PNGs (``DIR/<digit>/<i>.png``), split 80/20 with a fixed
seed, and a randomly initialised ``resnet10t`` is trained at 32 px with ``fit_one_cycle`` for each seed:
once plain, once with ``EMACallback(decay)``, interleaved. EMA does not change the training trajectory
(the live weights' ``raw_*`` columns must equal the plain run's), so the comparison is the average
against the live weights of the same run. Prints one JSON line per run and a summary (medians).

    python benchmarks/ema.py --epochs 5 --seeds 0 1 2 --decay 0.999 0.99
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def write_digits(root: Path) -> Path:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).astype(np.uint8)).convert("RGB").save(root / str(y) / f"{i:04d}.png")
    return root


def run(data: Path, seed: int, epochs: int, lr: float, decay: float | None) -> dict:
    import torch

    from vision_tl import EMACallback, ImageDataLoaders, Resize, accuracy, vision_learner

    torch.manual_seed(seed)
    dls = ImageDataLoaders.from_folder(data, valid_pct=0.2, seed=42, item_tfms=Resize(32), bs=64, num_workers=0,
                                       device="cpu")
    cbs = [EMACallback(decay=decay)] if decay is not None else []
    learn = vision_learner(dls, "resnet10t", pretrained=False, metrics=accuracy, cbs=cbs, device="cpu",
                           progress="silent")
    t0 = time.perf_counter()
    learn.fit_one_cycle(epochs, lr)
    secs = time.perf_counter() - t0
    names, rows = learn.recorder.metric_names[1:-1], learn.recorder.values
    out = {"seed": seed, "decay": decay, "seconds": round(secs, 1),
           "per_epoch": [dict(zip(names, [round(v, 4) for v in r])) for r in rows]}
    out["final"] = out["per_epoch"][-1]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--decay", type=float, nargs="+", default=[0.999, 0.99])
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dir", type=Path, default=None, help="where to write the PNGs (default: a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_digits(args.dir or Path(tmp) / "digits")
        results = []
        for seed in args.seeds:  # interleaved: plain, then each decay, per seed
            for decay in [None, *args.decay]:
                r = run(data, seed, args.epochs, args.lr, decay)
                print(json.dumps(r), flush=True)
                results.append(r)
    for decay in [None, *args.decay]:
        rs = [r["final"] for r in results if r["decay"] == decay]
        summary = {"decay": decay, "median_accuracy": statistics.median(r["accuracy"] for r in rs),
                   "median_valid_loss": statistics.median(r["valid_loss"] for r in rs),
                   "median_seconds": statistics.median(r["seconds"] for r in results if r["decay"] == decay)}
        if decay is not None:
            summary["median_raw_accuracy"] = statistics.median(r["raw_accuracy"] for r in rs)
            summary["median_raw_valid_loss"] = statistics.median(r["raw_valid_loss"] for r in rs)
        print("summary", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
