"""Predict latency and batch throughput of a loaded vision_tl learner, next to fastai 2.8 on the same data.

Both sides load an exported learner (vision_tl: ``.vtl``; fastai: ``export.pkl``) built on the same
architecture (random init, no download) and the same JPEGs, resized to ``--size``, on the CPU:

- latency: median wall time of ``predict(path)`` on one image (file decode included), after warm-up;
- throughput: images per second of ``predict_batch(files)`` vs fastai's ``get_preds(dl=test_dl(files))``.

Each side runs in its own process, alternating for ``--rounds`` rounds; the best round of each side
is reported (other processes on a shared machine only ever make a round slower).

Usage::

    python benchmarks/predict.py                      # resnet18, 64 px, 256 photo-sized JPEGs
    python benchmarks/predict.py --skip-fastai --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FASTAI_PYTHON = Path(__file__).resolve().parents[1] / ".venv-fastai" / "bin" / "python"

FASTAI_SCRIPT = r"""
import json, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import torch
from fastai.vision.all import ImageDataLoaders, Resize, load_learner, vision_learner, get_image_files
from torchvision.models import resnet18, resnet34, resnet50
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
data, tmp = Path(args["data"]), Path(args["tmp"])
archs = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
dls = ImageDataLoaders.from_folder(data, valid_pct=0.2, seed=0, item_tfms=Resize(args["size"]), bs=args["bs"])
learn = vision_learner(dls, archs[args["arch"]], pretrained=False)
learn.export(tmp / "export.pkl")
learn = load_learner(tmp / "export.pkl", cpu=True)
files = get_image_files(data)
for f in files[:5]:
    learn.predict(f)
times = []
for i in range(args["repeats"]):
    f = files[i % len(files)]
    t = time.perf_counter(); learn.predict(f); times.append(time.perf_counter() - t)
rates = []
learn.get_preds(dl=learn.dls.test_dl(files[: args["bs"]], bs=args["bs"]))
for _ in range(args["batch_runs"]):
    dl = learn.dls.test_dl(files, bs=args["bs"])
    t = time.perf_counter(); learn.get_preds(dl=dl); rates.append(len(files) / (time.perf_counter() - t))
print(json.dumps({"latency_ms": 1000 * statistics.median(times), "throughput": max(rates)}))
"""

VTL_SCRIPT = r"""
import json, statistics, sys, time
from pathlib import Path
import torch
from vision_tl import ModelConfig, Predictor, Resize, build_model, get_image_files, imagenet_stats, load_learner
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
data, tmp = Path(args["data"]), Path(args["tmp"])
files = get_image_files(data)
classes = sorted({f.parent.name for f in files})
cfg = ModelConfig(arch=args["arch"], n_out=len(classes))
Predictor(build_model(cfg), classes, [Resize(args["size"])], imagenet_stats, model_config=cfg).export(tmp / "m.vtl")
pred = load_learner(tmp / "m.vtl", device="cpu")
for f in files[:5]:
    pred.predict(f)
times = []
for i in range(args["repeats"]):
    f = files[i % len(files)]
    t = time.perf_counter(); pred.predict(f); times.append(time.perf_counter() - t)
rates = []
pred.predict_batch(files[: args["bs"]], bs=args["bs"], progress=False)
for _ in range(args["batch_runs"]):
    t = time.perf_counter(); pred.predict_batch(files, bs=args["bs"], progress=False)
    rates.append(len(files) / (time.perf_counter() - t))
print(json.dumps({"latency_ms": 1000 * statistics.median(times), "throughput": max(rates)}))
"""


def _run(python: str | Path, script: str, params: dict) -> dict:
    out = subprocess.run([str(python), "-c", script, json.dumps(params)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark process {python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-images", type=int, default=256, help="synthetic JPEGs, 3 classes")
    p.add_argument("--min-side", type=int, default=240, help="smallest side of the JPEGs (photo-like: 240-480)")
    p.add_argument("--max-side", type=int, default=480)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--repeats", type=int, default=60, help="single-image predictions timed")
    p.add_argument("--batch-runs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    p.add_argument("--skip-fastai", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from vision_tl import make_synthetic_folder

    fastai_ok = not args.skip_fastai and FASTAI_PYTHON.exists()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_folder(Path(tmp) / "data", n_per_class=-(-args.n_images // 3), seed=0,
                                     min_side=args.min_side, max_side=args.max_side)
        params = {k: getattr(args, k) for k in ("arch", "size", "bs", "repeats", "batch_runs", "threads")}
        params.update(data=str(data), tmp=tmp)
        rounds: dict[str, list[dict]] = {"vision_tl": [], "fastai": []}
        for _ in range(args.rounds):
            rounds["vision_tl"].append(_run(sys.executable, VTL_SCRIPT, params))
            if fastai_ok:
                rounds["fastai"].append(_run(FASTAI_PYTHON, FASTAI_SCRIPT, params))
    best = {side: {"latency_ms": min(r["latency_ms"] for r in rs), "throughput": max(r["throughput"] for r in rs)}
            for side, rs in rounds.items() if rs}
    result = {"setup": {**{k: v for k, v in params.items() if k not in ("data", "tmp")},
                        "n_images": 3 * -(-args.n_images // 3), "jpeg_sides": [args.min_side, args.max_side]},
              "rounds": rounds, **best}
    if "fastai" in best:
        result["latency_ratio"] = best["vision_tl"]["latency_ms"] / best["fastai"]["latency_ms"]
        result["throughput_ratio"] = best["vision_tl"]["throughput"] / best["fastai"]["throughput"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        s = result["setup"]
        print(f"{args.arch} at {args.size} px on CPU ({args.threads} threads), {s['n_images']} JPEGs "
              f"{args.min_side}-{args.max_side} px, bs {args.bs}, best of {args.rounds} rounds")
        print(f"{'':10} {'predict latency (median)':>26} {'batch throughput':>18}")
        for side, b in best.items():
            print(f"{side:10} {b['latency_ms']:23.2f} ms {b['throughput']:12.1f} img/s")
        if "fastai" in best:
            print(f"{'ratio':10} {result['latency_ratio']:23.3f} x  {result['throughput_ratio']:12.2f} x"
                  "   (goals: latency <= 0.25x, throughput >= 3x)")
    return result


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
