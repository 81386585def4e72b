"""Wall time of ``learn.fine_tune(1)`` against a raw PyTorch loop, and against fastai 2.8.

All of them run the same recipe on the same synthetic folder, arch, image size, batch size and
epoch count: one frozen epoch (head + norm layers train) and one unfrozen epoch, each followed
by a validation pass. The raw loop iterates the *same* ``DataLoaders`` with a plain
forward/backward/AdamW-step loop, no callbacks and no normalization: ``ours / raw`` (goal <= 1.0,
issue 19) is what a user gains or pays over the loop they would write, with torch's default AdamW;
``ours / raw_fused`` gives the raw loop the Learner's fused AdamW, so it is the Learner's own
overhead. ``ours / fastai`` compares end to end, data loading included (goal <= 0.70). Each timing
is the median of ``--repeats`` runs after one warm-up run, in a rotating order.

    python benchmarks/fit_overhead.py                    # ours, raw, and fastai if its venv exists
    python benchmarks/fit_overhead.py --no-fastai --arch resnet18 --size 64 --bs 32
    python benchmarks/fit_overhead.py --photos --n-per-class 300      # lesson 1 on 600 photo crops
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FASTAI_SCRIPT = r"""
import json, sys, time, torch, warnings
warnings.filterwarnings("ignore")
from fastai.vision.all import ImageDataLoaders, Resize, vision_learner, error_rate
import torchvision
path, size, bs, workers, arch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
kw = {} if workers == "auto" else {"num_workers": int(workers)}  # auto: fastai's default (the CPU count)
torch.set_num_threads(int(sys.argv[6]))
for line in sys.stdin:  # one timed fine_tune(1) per request, so runs interleave with ours
    if line.strip() == "quit":  # not EOF: forked DataLoader workers of the parent hold the pipe open
        break
    dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=0, item_tfms=Resize(size), bs=bs,
                                       device="cpu", **kw)
    learn = vision_learner(dls, getattr(torchvision.models, arch), pretrained=False, metrics=error_rate)
    with learn.no_bar(), learn.no_logging():
        t, c = time.perf_counter(), time.process_time()
        learn.fine_tune(1)
        print(json.dumps([time.perf_counter() - t, time.process_time() - c]), flush=True)
"""


def make_folder(root: Path, n_per_class: int, n_classes: int, min_side: int, max_side: int) -> Path:
    from vision_tl import make_synthetic_folder

    classes = [f"class{i}" for i in range(n_classes)]
    if not all((root / c).is_dir() for c in classes):
        make_synthetic_folder(root, classes=classes, n_per_class=n_per_class, seed=0, min_side=min_side,
                              max_side=max_side)
    return root


def make_dls(path: Path, args: argparse.Namespace):
    from vision_tl import ImageDataLoaders, Resize
    from vision_tl.data.decode_cache import decode_cache

    decode_cache().clear()  # every run starts cold: a run must not reuse the images an earlier run decoded
    workers = None if args.workers == "auto" else int(args.workers)  # auto: each library's own default
    return ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=0, item_tfms=Resize(args.size), bs=args.bs,
                                        num_workers=workers, device="cpu")


def arch_of(name: str):
    import torchvision

    return getattr(torchvision.models, name)


class Timer:
    """Wall and process-CPU seconds of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self) -> Timer:
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.times = (time.perf_counter() - self.t, time.process_time() - self.c)


def time_ours(path: Path, args: argparse.Namespace) -> tuple[float, float]:
    from vision_tl import error_rate, vision_learner

    learn = vision_learner(make_dls(path, args), arch_of(args.arch), pretrained=False, metrics=error_rate)
    learn.remove_cb(learn.progress)  # fastai runs with no_bar()/no_logging() too
    with Timer() as t:
        learn.fine_tune(1)
    return t.times


def time_raw(path: Path, args: argparse.Namespace, fused: bool = False) -> tuple[float, float]:
    """The same two epochs as a plain loop: forward, loss, backward, AdamW step; then validate.

    ``fused=False`` is torch's default AdamW (what a hand-written loop gets); ``fused=True`` is the
    optimizer the Learner uses, so ``ours / raw_fused`` is the Learner's own overhead alone."""
    import torch
    from torch import nn

    from vision_tl import vision_learner
    from vision_tl.train.optimizer import norm_param_ids

    dls = make_dls(path, args)
    # vision_learner only to build the identical model/groups/normalization; it is not used to train
    learn = vision_learner(dls, arch_of(args.arch), pretrained=False)
    model, groups, loss_func = learn.model, learn.param_groups, nn.CrossEntropyLoss()
    norm_ids = norm_param_ids(model)  # the layers the Learner keeps training while frozen
    opt = torch.optim.AdamW([p for g in groups for p in g], lr=1e-3, betas=(0.9, 0.99), eps=1e-5,
                            **({"fused": True} if fused else {}))
    with Timer() as t:
        raw_fine_tune(model, groups, norm_ids, opt, loss_func, dls)
    return t.times


def raw_fine_tune(model, groups, norm_ids, opt, loss_func, dls) -> None:
    import torch

    for epoch in range(2):
        for i, g in enumerate(groups):  # epoch 0: body frozen except its norm layers
            for p in g:
                p.requires_grad_(epoch == 1 or i == len(groups) - 1 or id(p) in norm_ids)
        dls.train.set_epoch(epoch)
        model.train()
        for xb, yb in dls.train:
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            preds, targs = zip(*[(model(xb), yb) for xb, yb in dls.valid])
            (torch.cat(preds).argmax(1) != torch.cat(targs)).float().mean().item()


class FastaiWorker:
    """A fastai 2.8 interpreter that runs one timed ``fine_tune(1)`` per request."""

    def __init__(self, python: str, path: Path, args: argparse.Namespace) -> None:
        cmd = [python, "-c", FASTAI_SCRIPT, str(path), str(args.size), str(args.bs), str(args.workers), args.arch,
               str(args.threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONWARNINGS": "ignore"})

    def __call__(self) -> tuple[float, float]:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fastai worker exited with {self.proc.wait()}")
        wall, cpu = json.loads(line)
        return wall, cpu

    def close(self) -> None:
        """Ask the worker to exit: waiting for EOF would hang, since the parent's forked DataLoader
        workers inherited the write end of this pipe and keep it open while they live."""
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def interleaved(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, cpu) of each function, all run in every repeat in a rotating order (after a warm-up)."""
    for f in fns.values():
        f()  # warm-up: imports, allocator, thread pools
    runs: dict[str, list] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeats):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:  # rotate the order: no position bias
            runs[k].append(fns[k]())
            print(f"  repeat {r}: {k} {runs[k][-1][0]:.3f} s wall", file=sys.stderr, flush=True)
            gc.collect()  # the finished learner's DataLoader workers stop now, not during the next run
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="image folder to (re)use; default: a temp dir")
    ap.add_argument("--n-per-class", type=int, default=128)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--min-side", type=int, default=375, help="image sides are drawn from [min, max] (pets: ~375-500)")
    ap.add_argument("--max-side", type=int, default=500)
    ap.add_argument("--photos", action="store_true",
                    help="real photo content (random crops of scikit-learn's two sample photos, classes china/flower, "
                         "--n-per-class each) instead of synthetic shapes")
    ap.add_argument("--arch", default="resnet18", help="a torchvision model name (both libraries accept it)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--workers", default="auto",
                    help="DataLoader workers for every leg, or 'auto': each library's default (the lesson-1 script)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fastai", default=str(REPO / ".venv-fastai" / "bin" / "python"))
    ap.add_argument("--no-fastai", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        if args.photos:
            from predict import make_photo_folder  # benchmarks/ is on the path when this runs as a script

            root = args.dir or Path(tmp) / "photos"
            if not (root / "train" / "china").is_dir():
                make_photo_folder(root, args.n_per_class, 0, sides=(args.min_side, args.max_side))
            path = root / "train"
        else:
            path = make_folder(args.dir or Path(tmp) / "imgs", args.n_per_class, args.classes, args.min_side,
                               args.max_side)
        fns = {"raw": lambda: time_raw(path, args), "raw_fused": lambda: time_raw(path, args, fused=True),
               "ours": lambda: time_ours(path, args)}
        worker = None
        if not args.no_fastai and Path(args.fastai).exists():
            worker = fns["fastai"] = FastaiWorker(args.fastai, path, args)
        try:
            med = interleaved(fns, args.repeats)
        finally:
            if worker is not None:
                worker.close()
    res: dict = {"arch": args.arch, "size": args.size, "bs": args.bs, "photos": args.photos,
                 "images": args.n_per_class * (2 if args.photos else args.classes),
                 "workers": args.workers, "threads": args.threads, "repeats": args.repeats}
    for k, (wall, cpu) in med.items():
        res[f"{k}_wall_s"], res[f"{k}_cpu_s"] = round(wall, 3), round(cpu, 3)
    print(f"fine_tune(1), {args.arch} {args.size}px bs={args.bs}, {res['images']} images, workers={args.workers}, "
          f"threads={args.threads}, median of {args.repeats} interleaved runs")
    for i, kind in enumerate(("wall", "cpu")):
        ours = med["ours"][i]
        raw, fused = med["raw"][i], med["raw_fused"][i]
        line = (f"  {kind:4s}: raw {raw:7.3f} s  vision_tl {ours:7.3f} s  = {ours / raw:.3f}x raw (goal <= 1.0)"
                f"  [raw with fused AdamW {fused:7.3f} s: ours = {ours / fused:.3f}x]")
        res[f"ours_over_raw_{kind}"] = round(ours / raw, 3)
        res[f"ours_over_raw_fused_{kind}"] = round(ours / fused, 3)
        if "fastai" in med:
            line += f"  fastai {med['fastai'][i]:7.3f} s  ours = {ours / med['fastai'][i]:.3f}x fastai (goal <= 0.70)"
            res[f"ours_over_fastai_{kind}"] = round(ours / med["fastai"][i], 3)
        print(line)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
