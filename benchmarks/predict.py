"""Predict latency and batch throughput of a loaded vision_tl learner, per backend, next to fastai 2.8
and next to the floor, from one run.

Every side loads an exported learner (vision_tl: ``.vtl``; fastai: ``export.pkl``) built on the same
architecture (random init, no download) and the same JPEGs, resized to ``--size``, on the CPU:

- latency: median wall time of ``predict(path)`` on one image (file decode included), after warm-up;
- throughput: images per second of ``predict_batch(files)`` vs fastai's ``get_preds(dl=test_dl(files))``.
- vision_tl runs once per backend (``load_learner(backend="torch")`` and ``"onnxruntime"``).
- the floor: decoding alone (the toolkit's draft-mode decode + resize, one image after the other) and
  the forward pass alone in onnxruntime at batch 1 and at batch ``--bs`` on ready uint8 tensors;
  floor latency = decode + forward at batch 1; floor throughput = 1 / (decode + forward per image at
  batch ``--bs``), i.e. the two sharing the same cores with nothing else.

Each side runs in its own process, alternating for ``--rounds`` rounds; the best round of each side
is reported (other processes on a shared machine only ever make a round slower). Without fastai's
virtualenv (``.venv-fastai``) its side is skipped with a note and the other figures still come out.

Usage::

    python benchmarks/predict.py                      # resnet18, 64 px, 256 photo-sized JPEGs
    python benchmarks/predict.py --skip-fastai --json
    python benchmarks/predict.py --backends onnxruntime --rounds 1
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
torch.manual_seed(0)  # the same file every round, so the onnxruntime graph is built once and then cached
model = build_model(cfg)
if not (tmp / "m.vtl").exists():
    Predictor(model, classes, [Resize(args["size"])], imagenet_stats, model_config=cfg).export(tmp / "m.vtl")
pred = load_learner(tmp / "m.vtl", device="cpu", backend=args["backend"])
assert pred.backend == args["backend"], pred.backend
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


FLOOR_SCRIPT = r"""
import json, statistics, sys, time
from pathlib import Path
import numpy as np, torch
from vision_tl import get_image_files, load_learner
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
data, tmp = Path(args["data"]), Path(args["tmp"])
files = get_image_files(data)
pred = load_learner(tmp / "m.vtl", device="cpu", backend="onnxruntime")  # the graph cached by the vision_tl side
imgs = [pred.preprocess(f) for f in files[:5]]
times = []
for f in files:
    t = time.perf_counter(); pred.preprocess(f); times.append(time.perf_counter() - t)
x = np.ascontiguousarray(np.stack([pred.preprocess(f) for f in files[: args["bs"]]]).transpose(0, 3, 1, 2))
sess, name = pred.session, pred.session.get_inputs()[0].name
def fwd(batch, n):
    sess.run(None, {name: batch})
    ts = []
    for _ in range(n):
        t = time.perf_counter(); sess.run(None, {name: batch}); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
one, full = fwd(x[:1].copy(), args["repeats"]), fwd(x, max(3, args["batch_runs"] * 2))
decode = statistics.median(times)
print(json.dumps({"decode_ms": 1000 * decode, "decode_img_s": len(times) / sum(times),
                  "forward_b1_ms": 1000 * one, "forward_bs_img_s": len(x) / full,
                  "latency_ms": 1000 * (decode + one), "throughput": 1 / (sum(times) / len(times) + full / len(x))}))
"""


def _run(python: str | Path, script: str, params: dict) -> dict:
    out = subprocess.run([str(python), "-c", script, json.dumps(params)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark process {python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best(rs: list[dict]) -> dict:
    """The best round of one side: the lowest latencies, the highest rates (noise only ever slows a round)."""
    return {k: (min if k.endswith("_ms") else max)(r[k] for r in rs) for k in rs[0]}


def _ratios(best: dict) -> dict:
    """Each vision_tl backend against fastai and against the floor (latency: lower is better; throughput: higher)."""
    out = {}
    for side, b in best.items():
        if not side.startswith("vision_tl"):
            continue
        for ref in ("fastai", "floor"):
            if ref in best:
                out[f"{side} / {ref}"] = {"latency": round(b["latency_ms"] / best[ref]["latency_ms"], 3),
                                          "throughput": round(b["throughput"] / best[ref]["throughput"], 3)}
    return out


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
    p.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads on every side")
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"])
    p.add_argument("--skip-fastai", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from vision_tl import make_synthetic_folder

    notes = []
    fastai_ok = not args.skip_fastai and FASTAI_PYTHON.exists()
    if not fastai_ok:
        notes.append("fastai skipped: " + ("--skip-fastai" if args.skip_fastai else f"no fastai virtualenv at {FASTAI_PYTHON}"))
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_folder(Path(tmp) / "data", n_per_class=-(-args.n_images // 3), seed=0,
                                     min_side=args.min_side, max_side=args.max_side)
        params = {k: getattr(args, k) for k in ("arch", "size", "bs", "repeats", "batch_runs", "threads")}
        params.update(data=str(data), tmp=tmp)
        rounds: dict[str, list[dict]] = {f"vision_tl[{b}]": [] for b in args.backends}
        rounds.update(floor=[], fastai=[])
        for _ in range(args.rounds):
            for b in args.backends:
                rounds[f"vision_tl[{b}]"].append(_run(sys.executable, VTL_SCRIPT, {**params, "backend": b}))
            rounds["floor"].append(_run(sys.executable, FLOOR_SCRIPT, params))
            if fastai_ok:
                rounds["fastai"].append(_run(FASTAI_PYTHON, FASTAI_SCRIPT, params))
    best = {side: _best(rs) for side, rs in rounds.items() if rs}
    result = {"setup": {**{k: v for k, v in params.items() if k not in ("data", "tmp")},
                        "n_images": 3 * -(-args.n_images // 3), "jpeg_sides": [args.min_side, args.max_side]},
              "notes": notes, "rounds": rounds, "best": best, "ratios": _ratios(best)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result, args)
    return result


def _print(result: dict, args: argparse.Namespace) -> None:
    s, best = result["setup"], result["best"]
    print(f"{args.arch} at {args.size} px on CPU ({args.threads} threads), {s['n_images']} JPEGs "
          f"{args.min_side}-{args.max_side} px, bs {args.bs}, best of {args.rounds} rounds")
    print(f"{'':24} {'predict latency (median)':>26} {'batch throughput':>18}")
    for side, b in best.items():
        print(f"{side:24} {b['latency_ms']:23.2f} ms {b['throughput']:12.1f} img/s")
    if "floor" in best:
        f = best["floor"]
        print(f"  floor = decode {f['decode_ms']:.2f} ms ({f['decode_img_s']:.0f} img/s) + onnxruntime forward "
              f"{f['forward_b1_ms']:.2f} ms at batch 1, {f['forward_bs_img_s']:.0f} img/s at batch {args.bs}")
    for pair, r in result["ratios"].items():
        print(f"{pair:24} {r['latency']:23.3f} x  {r['throughput']:12.2f} x")
    print("goals: latency <= 0.25x fastai and <= 1.3x floor; throughput >= 2.5x fastai and >= 0.85x floor")
    for n in result["notes"]:
        print(f"note: {n}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
