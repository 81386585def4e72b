"""How fast ``vision-tl doctor`` is: the scan (read + hash + decode once at 64 px), the near-duplicate index
at 100k images, and the suspect-label pass against one ``fine_tune`` epoch on the same data.

Writes ``--n`` synthetic ~500x375 JPEGs in two class folders (``--dir``, a temporary folder by default).
The scan is timed side by side with fastai 2.8's ``verify_images`` (decode only, no hashing; in its own
interpreter, found at ``.venv-fastai/bin/python``), interleaved, median of ``--rounds``.

    flock /tmp/vtl-bench.lock python benchmarks/doctor.py --n 3000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FASTAI = r"""
import sys, time
from fastai.vision.all import get_image_files, verify_images
files = get_image_files(sys.argv[1])
t = time.perf_counter(); bad = verify_images(files); dt = time.perf_counter() - t  # parallel over defaults.cpus
print(len(files) / dt, len(bad))
"""


def make_images(root: Path, n: int, seed: int = 0) -> list[Path]:
    from vision_tl import synthetic_image

    rng = random.Random(seed)
    out = []
    for i in range(n):
        d = root / ("cat" if i % 2 else "dog")
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{i}.jpg"
        if not p.exists():
            synthetic_image(i % 2, rng, (375 + rng.randint(-20, 20), 500 + rng.randint(-20, 20))).save(p, quality=90)
        out.append(p)
    return out


def scan_rate(files: list[Path], workers: int) -> float:
    from vision_tl.doctor.scan import scan_files

    t = time.perf_counter()
    scan_files(files, thumb=64, num_workers=workers, progress=False)
    return len(files) / (time.perf_counter() - t)


def fastai_rate(root: Path, workers: int) -> float | None:
    py = REPO / ".venv-fastai/bin/python"
    py = py if py.exists() else Path("/work/main/.venv-fastai/bin/python")
    if not py.exists():
        return None
    out = subprocess.run([str(py), "-c", FASTAI, str(root), str(workers)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def index_at_scale(n: int = 100_000, d: int = 8) -> dict:
    import numpy as np

    from vision_tl.doctor.duplicates import near_pairs

    rng = np.random.default_rng(0)
    h = [int(x) for x in rng.integers(0, 2**63, n, dtype=np.int64)]
    for k in range(1000):  # planted copies 0..d bits away
        h[n - 1 - k] = h[k] ^ int(sum(1 << int(b) for b in rng.choice(64, int(rng.integers(0, d + 1)), replace=False)))
    t = time.perf_counter()
    pairs = near_pairs(h, d)
    return {"n": n, "max_distance": d, "seconds": round(time.perf_counter() - t, 2), "pairs": len(pairs),
            "planted": 1000, "all_pairs_would_be": n * (n - 1) // 2}


def labels_vs_epoch(files: list[Path], arch: str, size: int, bs: int) -> dict:
    import numpy as np

    from vision_tl import ImageDataLoaders, Resize, vision_learner
    from vision_tl.doctor.labels import embed, suspect_labels
    from vision_tl.doctor.scan import scan_files

    scans = scan_files(files, thumb=size, progress=False)
    labels = [Path(s.path).parent.name for s in scans]
    t = time.perf_counter()
    emb = embed([s.thumb for s in scans], arch=arch, pretrained=False, bs=bs, progress=False)
    suspect_labels(emb, labels)
    t_labels = time.perf_counter() - t
    root = files[0].parent.parent
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.2, seed=42, item_tfms=Resize(size), bs=bs, num_workers=2,
                                       device="cpu")
    learn = vision_learner(dls, arch, pretrained=False)
    learn.unfreeze()
    t = time.perf_counter()
    learn.fit_one_cycle(1, 1e-3)  # one fine_tune epoch (the unfrozen kind), training + validation
    t_epoch = time.perf_counter() - t
    del np
    return {"arch": arch, "size": size, "images": len(files), "labels_pass_s": round(t_labels, 1),
            "fine_tune_epoch_s": round(t_epoch, 1), "ratio_labels_over_epoch": round(t_labels / t_epoch, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--skip-labels", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    root = args.dir or Path(tempfile.mkdtemp(prefix="vtl-doctor-bench-"))
    files = make_images(root / "data", args.n)
    ours, peer = [], []
    for _ in range(args.rounds):  # interleaved: the machine's load changes both alike
        ours.append(scan_rate(files, args.workers))
        p = fastai_rate(root / "data", args.workers)
        if p is not None:
            peer.append(p)
    res = {"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
           "scan": {"images": len(files), "workers": args.workers, "ours_img_s": round(statistics.median(ours), 1),
                    "rounds_ours": [round(x, 1) for x in ours],
                    "fastai_verify_images_img_s": round(statistics.median(peer), 1) if peer else None,
                    "rounds_fastai": [round(x, 1) for x in peer]},
           "near_index": index_at_scale()}
    if peer:
        res["scan"]["ratio_ours_over_fastai"] = round(res["scan"]["ours_img_s"] / res["scan"]["fastai_verify_images_img_s"], 2)
    if not args.skip_labels:
        res["labels_vs_epoch"] = labels_vs_epoch(files, args.arch, 64, 64)
    res["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
