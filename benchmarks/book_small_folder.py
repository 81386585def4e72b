"""The fastai book's small-folder case, ours against fastai 2.8, like for like (issue 21).

A folder of 222 photo-sized images in 3 classes (the production chapter's bears: a few hundred
downloads), ``Resize(128)`` + ``aug_transforms(size=64)``, resnet34 (random init on both sides: no
weights can be downloaded here; same architecture, same init scheme), ``lr_find(num_it=40)`` then
``fine_tune(1)``. vision_tl runs with its defaults, fastai with ``num_workers=0`` (its fastest on this
machine). Each run is a fresh subprocess; runs alternate ours/fastai; the script prints ``uptime``
before and after, because figures from a machine shared with other jobs are not comparable.

    flock /tmp/vtl-bench.lock python benchmarks/book_small_folder.py --repeats 1
    python benchmarks/book_small_folder.py --no-fastai --num-it 5 --n 30     # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OURS = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
from vision_tl import ImageDataLoaders, Resize, aug_transforms, vision_learner, error_rate
path, num_it = sys.argv[1], int(sys.argv[2])
t_import = time.perf_counter()
dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=42, item_tfms=Resize(128), batch_tfms=aug_transforms(size=64))
learn = vision_learner(dls, "resnet34", pretrained=False, metrics=error_rate)
t1 = time.perf_counter()
learn.lr_find(num_it=num_it, show_plot=False)
t2 = time.perf_counter()
learn.fine_tune(1)
t3 = time.perf_counter()
print(json.dumps({"import": t_import - t0, "setup": t1 - t_import, "lr_find": t2 - t1, "fine_tune": t3 - t2, "total": t3 - t_import}))
"""

FASTAI = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, vision_learner, error_rate, resnet34
path, num_it = sys.argv[1], int(sys.argv[2])
t_import = time.perf_counter()
dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=42, item_tfms=Resize(128), batch_tfms=aug_transforms(size=64),
                                   num_workers=0, device="cpu")
learn = vision_learner(dls, resnet34, pretrained=False, metrics=error_rate)
t1 = time.perf_counter()
with learn.no_bar(), learn.no_logging():
    learn.lr_find(num_it=num_it, show_plot=False)
    t2 = time.perf_counter()
    learn.fine_tune(1)
t3 = time.perf_counter()
print(json.dumps({"import": t_import - t0, "setup": t1 - t_import, "lr_find": t2 - t1, "fine_tune": t3 - t2, "total": t3 - t_import}))
"""


def make_folder(root: Path, n: int) -> Path:
    from vision_tl import make_synthetic_folder

    classes = ("grizzly", "black", "teddy")
    per = [n // 3 + (1 if k < n % 3 else 0) for k in range(3)]
    if not all((root / c).is_dir() for c in classes):
        for c, k in zip(classes, per):  # photo-sized, varied aspect ratios, as downloaded photos are
            make_synthetic_folder(root, classes=(c,), n_per_class=k, seed=hash(c) % 1000, min_side=240, max_side=500)
    return root


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "?"


def run(python: str, script: str, path: Path, num_it: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1", "MPLBACKEND": "Agg",
           "VISION_TL_PROGRESS": "0"}
    out = subprocess.run([python, "-c", script, str(path), str(num_it)], capture_output=True, text=True, env=env,
                         timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="image folder to (re)use; default: a temp dir")
    ap.add_argument("--n", type=int, default=222, help="number of images (3 classes)")
    ap.add_argument("--num-it", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fastai", default=str(Path("/work/main/.venv-fastai/bin/python")))
    ap.add_argument("--no-fastai", action="store_true")
    args = ap.parse_args(argv)
    path = make_folder(args.dir or Path(tempfile.mkdtemp(prefix="book_small_")), args.n)
    sides = {"ours": (sys.executable, OURS)}
    if not args.no_fastai and Path(args.fastai).exists():
        sides["fastai"] = (args.fastai, FASTAI)
    result: dict = {"uptime_before": uptime(), "n_images": args.n, "num_it": args.num_it, "runs": {k: [] for k in sides}}
    for _ in range(args.repeats):
        for name, (python, script) in sides.items():  # alternate: both see the same load
            result["runs"][name].append(run(python, script, path, args.num_it))
    result["uptime_after"] = uptime()
    result["median_total_s"] = {k: statistics.median(r["total"] for r in v) for k, v in result["runs"].items()}
    if "fastai" in sides:
        result["ours_over_fastai"] = result["median_total_s"]["ours"] / result["median_total_s"]["fastai"]
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
