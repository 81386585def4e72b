"""Train-pass throughput of the data pipeline (img/s), optionally side by side with fastai 2.8.

Writes ``--n`` synthetic ~500x375 JPEGs (like Oxford-IIIT Pet photos) into ``--dir`` (a temporary
folder by default), then times full passes over ``dls.train`` at ``--size`` px with ``--workers``
workers: one warm-up pass, then the median of ``--passes`` passes. With ``--fastai PYTHON`` (found
automatically at ``.venv-fastai/bin/python`` next to this checkout) the same pass runs with fastai's
``ImageDataLoaders`` in that interpreter on the same files, and the ratio is printed.

    python benchmarks/data_pipeline.py                 # ours, plus fastai when its venv exists
    python benchmarks/data_pipeline.py --no-fastai --aug
    python benchmarks/data_pipeline.py --datablock     # DataBlock(...).dataloaders in both libraries
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FASTAI_SCRIPT = r"""
import json, statistics, sys, time
from pathlib import Path
from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, ImageDataLoaders, RandomSplitter, Resize,
    aug_transforms, get_image_files, using_attr)
path, size, workers, passes, bs, aug = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
files = get_image_files(path)
kw = dict(item_tfms=Resize(size), batch_tfms=aug_transforms() if aug else None)
if sys.argv[7] == "1":
    dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, splitter=RandomSplitter(0.2, seed=42),
        get_y=using_attr(lambda f: f[0].isupper(), "name"), **kw).dataloaders(path, bs=bs, num_workers=workers, device="cpu")
else:
    dls = ImageDataLoaders.from_name_func(path, files, lambda f: f[0].isupper(), valid_pct=0.2, seed=42,
        bs=bs, num_workers=workers, device="cpu", **kw)
def one_pass():
    t = time.perf_counter(); n = 0
    for xb, yb in dls.train:
        n += len(xb)
    return n / (time.perf_counter() - t)
one_pass()
print(json.dumps({"img_s": statistics.median(one_pass() for _ in range(passes))}))
"""


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` JPEGs of about 500x375 (both orientations), pets-style names; reuse them if present."""
    from vision_tl import synthetic_image

    marker = folder / ".vision_tl_benchmark"
    if folder.exists() and any(folder.iterdir()) and not marker.exists():
        raise SystemExit(f"--dir {str(folder)!r} is not empty and was not made by this benchmark: "
                         "give a new or empty folder (nothing of yours is overwritten)")
    folder.mkdir(parents=True, exist_ok=True)
    marker.touch()
    if len(list(folder.glob("*.jpg"))) >= n:
        return folder
    rng = random.Random(seed)
    for i in range(n):
        is_cat = i % 3 == 0
        hw = (375, 500) if rng.random() < 0.75 else (500, 375)
        hw = (hw[0] + rng.randint(-20, 20), hw[1] + rng.randint(-20, 20))
        name = f"{'Cat' if is_cat else 'dog'}_{i}.jpg"
        synthetic_image(0 if is_cat else 1, rng, hw).save(folder / name, quality=90)
    return folder


def ours(path: Path, size: int, workers: int, passes: int, bs: int, aug: bool, datablock: bool = False) -> float:
    """Median img/s of full train passes with vision_tl (the factory, or the same DataBlock written out)."""
    from vision_tl import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        ImageDataLoaders,
        RandomSplitter,
        Resize,
        aug_transforms,
        get_image_files,
        using_attr,
    )

    files = get_image_files(path)
    kw = dict(item_tfms=Resize(size), batch_tfms=aug_transforms() if aug else None)
    if datablock:
        block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                          splitter=RandomSplitter(0.2, seed=42), get_y=using_attr(lambda f: f[0].isupper(), "name"), **kw)
        dls = block.dataloaders(path, bs=bs, num_workers=workers, device="cpu")
    else:
        dls = ImageDataLoaders.from_name_func(path, files, lambda f: f[0].isupper(), valid_pct=0.2, seed=42, bs=bs,
                                              num_workers=workers, device="cpu", **kw)

    def one_pass() -> float:
        t, n = time.perf_counter(), 0
        for xb, _ in dls.train:
            n += len(xb)
        return n / (time.perf_counter() - t)

    one_pass()  # warm-up: workers start, page cache filled
    return statistics.median(one_pass() for _ in range(passes))


def decode_per_core(path: Path, size: int) -> tuple[float, float]:
    """Single-process img/s of decode + Resize(size), with and without JPEG draft mode."""
    from vision_tl import Resize, load_rgb

    files, rz = sorted(path.glob("*.jpg")), Resize(size)
    rates = []
    for draft in (rz.draft_size, None):
        t = time.perf_counter()
        for f in files:
            rz(load_rgb(f, draft_size=draft), train=False)
        rates.append(len(files) / (time.perf_counter() - t))
    return rates[0], rates[1]


def theirs(python: str, path: Path, size: int, workers: int, passes: int, bs: int, aug: bool,
           datablock: bool = False) -> float:
    """Median img/s of the same passes with fastai, in the interpreter ``python``."""
    args = [python, "-c", FASTAI_SCRIPT, str(path), str(size), str(workers), str(passes), str(bs), "1" if aug else "0",
            "1" if datablock else "0"]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"fastai run failed ({python}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["img_s"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="folder for the JPEGs (kept); default a temporary one")
    ap.add_argument("--n", type=int, default=500, help="number of images (default 500)")
    ap.add_argument("--size", type=int, default=64, help="output size in px (default 64)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    ap.add_argument("--passes", type=int, default=3, help="timed passes, median reported (default 3)")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--aug", action="store_true", help="also run aug_transforms() as batch transforms")
    ap.add_argument("--datablock", action="store_true",
                    help="build the loaders with DataBlock(...).dataloaders (both libraries) instead of from_name_func")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of ours and fastai's (default 1)")
    ap.add_argument("--fastai", help="python interpreter with fastai installed (default: auto-detect)")
    ap.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    args = ap.parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    with tempfile.TemporaryDirectory() as tmp:
        path = make_images(args.dir or Path(tmp) / "images", args.n)
        cfg = (f"{args.n} JPEGs ~500x375 -> {args.size}px, bs={args.bs}, {args.workers} workers, aug={args.aug}, "
               f"{'DataBlock' if args.datablock else 'from_name_func'}")
        print(f"config: {cfg}, median of {args.passes} passes after a warm-up")
        with_draft, without = decode_per_core(path, args.size)
        print(f"decode+resize, 1 process: {with_draft:.0f} img/s with draft mode, {without:.0f} without")
        fastai = args.fastai or (None if args.no_fastai else _find_fastai())
        ratios = []
        for r in range(args.rounds):  # alternate the two, so that a busy machine hurts both alike
            mine = ours(path, args.size, args.workers, args.passes, args.bs, args.aug, args.datablock)
            print(f"[{r + 1}/{args.rounds}] vision_tl: {mine:8.1f} img/s")
            if fastai and not args.no_fastai:
                other = theirs(fastai, path, args.size, args.workers, args.passes, args.bs, args.aug, args.datablock)
                ratios.append(mine / other)
                print(f"[{r + 1}/{args.rounds}] fastai:    {other:8.1f} img/s  ({fastai})  ratio {mine / other:.2f}x")
        if ratios:
            print(f"ratio vision_tl / fastai: {statistics.median(ratios):.2f}x (median of {len(ratios)} rounds)")


def _find_fastai() -> str | None:
    cand = REPO / ".venv-fastai" / "bin" / "python"
    return str(cand) if cand.exists() else None


if __name__ == "__main__":
    sys.exit(main())
