"""Predict latency, batch throughput and accuracy of a loaded vision_tl learner, per runner, next to fastai
2.8 and next to the floor, from one run.

Data: real-photo content, not flat squares: random crops of scikit-learn's two sample photos (``china``
and ``flower``, the two classes), flipped at random, resized so the long side is 300-500 px, saved as
JPEG (quality 80-95), in ``train/`` and ``valid/`` folders. (Or ``--data DIR`` with ``train/<class>``
and ``valid/<class>``.)

Models: each side trains its own model once with the same recipe (``--arch`` from random init, no
download, ``--epochs`` of one-cycle at ``--size`` px) and exports it (vision_tl: ``.vtl``; fastai:
``export.pkl``); every vision_tl runner loads the same ``.vtl``. Then, for ``--rounds`` rounds, each
side runs in a fresh process (the order rotates every round):

- load: seconds of ``load_learner`` in a fresh process; once more at setup with an empty per-user graph
  cache (``onnxruntime_first_load_s``: the ONNX graph is built and checked), then with it cached;
- latency: median wall time of ``predict(path)`` on the validation JPEGs (file decode included);
- throughput: images per second of ``predict_batch(files)`` vs fastai's ``get_preds(dl=test_dl(files))``;
- accuracy: of the batch predictions on the validation images;
- a profile of one ``predict`` call, stage by stage (medians): JPEG decode (draft mode), resize (the
  item transforms), the runner (batch of one), output decoding (arg-max and label); the rest of
  ``latency_ms`` is the predictor's own Python.
- the floor: the toolkit's decode + resize alone and the onnxruntime forward alone (batch 1 and
  ``--bs``, on ready uint8 tensors): floor latency = decode + forward at batch 1; floor throughput =
  1 / (decode + forward per image at batch ``--bs``).

Runners: ``torch``, ``onnxruntime`` (fp32) and ``onnxruntime-int8`` (``load_learner(precision="int8")``),
when this vision_tl has ``vision-tl quantize``: the ``.vtl`` is quantized once, calibrated on the
training images; otherwise that runner is skipped with a note. Figures are medians over rounds; ratios
compare medians. Without fastai's virtualenv its side is skipped with a note.

Usage::

    python benchmarks/predict.py                      # resnet18, 64 px, 2 x 96 validation photos
    python benchmarks/predict.py --skip-fastai --json
    python benchmarks/predict.py --backends onnxruntime --rounds 1
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

FASTAI_PYTHON = Path(os.environ.get("FASTAI_PYTHON", Path(__file__).resolve().parents[1] / ".venv-fastai" / "bin" / "python"))
if not FASTAI_PYTHON.exists() and Path("/work/main/.venv-fastai/bin/python").exists():
    FASTAI_PYTHON = Path("/work/main/.venv-fastai/bin/python")
RUNNERS = ("torch", "onnxruntime", "onnxruntime-int8")

FASTAI_TRAIN = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import torch
from fastai.vision.all import ImageDataLoaders, Resize, vision_learner
from torchvision.models import resnet18, resnet34, resnet50
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"]); torch.manual_seed(0)
dls = ImageDataLoaders.from_folder(args["data"], train="train", valid="valid", item_tfms=Resize(args["size"]), bs=32)
learn = vision_learner(dls, {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}[args["arch"]],
                       pretrained=False)
t = time.perf_counter()
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(args["epochs"], 2e-3)
learn.export(Path(args["tmp"]) / "export.pkl")
print(json.dumps({"train_s": time.perf_counter() - t}))
"""

FASTAI_MEASURE = r"""
import json, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import torch
from fastai.vision.all import load_learner, get_image_files
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
t = time.perf_counter(); learn = load_learner(Path(args["tmp"]) / "export.pkl", cpu=True); load = time.perf_counter() - t
files = sorted(get_image_files(Path(args["data"]) / "valid"))
for f in files[:5]:
    learn.predict(f)
times = []
for i in range(args["repeats"]):
    f = files[i % len(files)]
    t = time.perf_counter(); learn.predict(f); times.append(time.perf_counter() - t)
rates, preds = [], None
for _ in range(args["batch_runs"]):
    dl = learn.dls.test_dl(files, bs=args["bs"])
    t = time.perf_counter(); preds = learn.get_preds(dl=dl)[0]; rates.append(len(files) / (time.perf_counter() - t))
labels = [learn.dls.vocab[i] for i in preds.argmax(1).tolist()]
acc = sum(lab == f.parent.name for lab, f in zip(labels, files)) / len(files)
print(json.dumps({"load_s": load, "latency_ms": 1000 * statistics.median(times), "throughput": max(rates), "accuracy": acc}))
"""

VTL_TRAIN = r"""
import json, sys, time
from pathlib import Path
import torch
from vision_tl import ImageDataLoaders, Resize, vision_learner
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"]); torch.manual_seed(0)
dls = ImageDataLoaders.from_folder(args["data"], train="train", valid="valid", item_tfms=Resize(args["size"]), bs=32)
learn = vision_learner(dls, args["arch"], pretrained=False)
t = time.perf_counter()
learn.fit_one_cycle(args["epochs"], 2e-3)
learn.export(Path(args["tmp"]) / "m.vtl", verbose=False)
print(json.dumps({"train_s": time.perf_counter() - t}))
"""

VTL_MEASURE = r"""
import json, statistics, sys, time
from pathlib import Path
import torch
from vision_tl import get_image_files, load_learner, load_rgb
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
files = sorted(get_image_files(Path(args["data"]) / "valid"))
backend, _, precision = args["runner"].partition("-")
t = time.perf_counter()
pred = load_learner(Path(args["tmp"]) / "m.vtl", device="cpu", backend=backend, precision=precision or "fp32")
load = time.perf_counter() - t
assert pred.backend + ("" if pred.precision == "fp32" else "-" + pred.precision) == args["runner"], (pred, args["runner"])
for f in files[:5]:
    pred.predict(f)
times = []
for i in range(args["repeats"]):
    f = files[i % len(files)]
    t = time.perf_counter(); pred.predict(f); times.append(time.perf_counter() - t)
rates, probs = [], None
pred.predict_batch(files[: args["bs"]], bs=args["bs"], progress=False)
for _ in range(args["batch_runs"]):
    t = time.perf_counter(); probs = pred.predict_batch(files, bs=args["bs"], progress=False)
    rates.append(len(files) / (time.perf_counter() - t))
acc = sum(lab == f.parent.name for lab, f in zip(pred.decode(probs), files)) / len(files)
stages = {"decode": [], "resize": [], "runner": [], "outputs": []}  # one predict call, stage by stage
for i in range(args["repeats"]):
    f = files[i % len(files)]
    t0 = time.perf_counter(); arr = load_rgb(f, draft_size=pred.draft_size); t1 = time.perf_counter()
    img = pred.preprocess(arr); t2 = time.perf_counter()  # an array: the item transforms alone
    probs1 = pred.runner(torch.from_numpy(img).permute(2, 0, 1)[None])[0]; t3 = time.perf_counter()
    idx = probs1.argmax(); label = pred.vocab[int(idx)]; t4 = time.perf_counter()
    for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
        stages[k].append(v)
print(json.dumps({"load_s": load, "latency_ms": 1000 * statistics.median(times), "throughput": max(rates), "accuracy": acc,
                  **{f"{k}_ms": 1000 * statistics.median(v) for k, v in stages.items()}}))
"""

LOAD = r"""
import json, sys, time
from pathlib import Path
from vision_tl import load_learner
args = json.loads(sys.argv[1])
t = time.perf_counter(); load_learner(Path(args["tmp"]) / "m.vtl", device="cpu", backend=args.get("backend", "onnxruntime"))
print(json.dumps({"load_s": time.perf_counter() - t}))
"""

FLOOR = r"""
import json, statistics, sys, time
from pathlib import Path
import numpy as np, torch
from vision_tl import get_image_files, load_learner
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
files = sorted(get_image_files(Path(args["data"]) / "valid"))
pred = load_learner(Path(args["tmp"]) / "m.vtl", device="cpu", backend="onnxruntime")  # the cached graph
imgs = [pred.preprocess(f) for f in files[:5]]
times = []
for f in files:
    t = time.perf_counter(); pred.preprocess(f); times.append(time.perf_counter() - t)
x = np.ascontiguousarray(np.stack([pred.preprocess(f) for f in files[: args["bs"]]]).transpose(0, 3, 1, 2))
sess = pred.runner.session
name = sess.get_inputs()[0].name
def fwd(batch, n):
    sess.run(None, {name: batch})
    ts = []
    for _ in range(n):
        t = time.perf_counter(); sess.run(None, {name: batch}); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
one, full = fwd(x[:1].copy(), args["repeats"]), fwd(x, max(3, args["batch_runs"] * 2))
decode = statistics.median(times)
print(json.dumps({"decode_ms": 1000 * decode, "forward_b1_ms": 1000 * one, "forward_bs_img_s": len(x) / full,
                  "latency_ms": 1000 * (decode + one), "throughput": 1 / (sum(times) / len(times) + full / len(x))}))
"""


def make_photo_folder(root: Path, n_train: int, n_valid: int, seed: int = 0, sides: tuple[int, int] = (300, 500)) -> Path:
    """``root/{train,valid}/{china,flower}/*.jpg``: random crops of scikit-learn's two sample photos."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = random.Random(seed)
    for name, arr in zip(("china", "flower"), load_sample_images().images):
        photo = Image.fromarray(arr)
        w, h = photo.size
        for split, n in (("train", n_train), ("valid", n_valid)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cw, ch = rng.randint(w // 4, w), rng.randint(h // 4, h)
                x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                img = photo.crop((x, y, x + cw, y + ch))
                if rng.random() < 0.5:
                    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                scale = rng.randint(*sides) / max(cw, ch)
                img = img.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BICUBIC)
                img.save(folder / f"{name}_{i:04d}.jpg", quality=rng.randint(80, 95))
    return root


def _run(python: str | Path, script: str, params: dict, env: dict | None = None) -> dict:
    out = subprocess.run([str(python), "-c", script, json.dumps(params)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark process {python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _quantize(model: Path, calib: Path, env: dict) -> str | None:
    """Add int8 data to ``model`` with ``vision-tl quantize``; the reason when this vision_tl cannot."""
    out = subprocess.run([sys.executable, "-m", "vision_tl.cli", "quantize", str(model), "--calib", str(calib)],
                         capture_output=True, text=True, env=env)
    return None if out.returncode == 0 else (out.stderr.strip().splitlines() or ["failed"])[-1][:200]


def _median(rs: list[dict]) -> dict:
    """The median of each figure over the rounds of one side."""
    return {k: statistics.median(r[k] for r in rs) for k in rs[0]}


def _ratios(med: dict) -> dict:
    """Each vision_tl runner against fastai and against the floor (latency: lower is better; throughput: higher)."""
    out = {}
    for side, b in med.items():
        if not side.startswith("vision_tl"):
            continue
        for ref in ("fastai", "floor"):
            if ref in med:
                out[f"{side} / {ref}"] = {"latency": round(b["latency_ms"] / med[ref]["latency_ms"], 3),
                                          "throughput": round(b["throughput"] / med[ref]["throughput"], 3)}
    return out


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=64, help="training photos per class")
    p.add_argument("--n-valid", type=int, default=96, help="validation photos per class (timed)")
    p.add_argument("--data", type=Path, default=None, help="a folder with train/<class> and valid/<class> instead")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--repeats", type=int, default=60, help="single-image predictions timed per round")
    p.add_argument("--batch-runs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads on every side")
    p.add_argument("--backends", nargs="+", default=list(RUNNERS), choices=RUNNERS)
    p.add_argument("--skip-fastai", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    notes, setup = [], {}
    fastai_ok = not args.skip_fastai and FASTAI_PYTHON.exists()
    if not fastai_ok:
        notes.append("fastai skipped: " + ("--skip-fastai" if args.skip_fastai else f"no fastai virtualenv at {FASTAI_PYTHON}"))
    uptime_start = _uptime()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or make_photo_folder(Path(tmp) / "data", args.n_train, args.n_valid)
        env = {**os.environ, "VISION_TL_CACHE": str(Path(tmp) / "cache")}  # empty: the first load is measured
        params = {k: getattr(args, k) for k in ("arch", "size", "bs", "repeats", "batch_runs", "threads", "epochs")}
        params.update(data=str(data), tmp=tmp)
        setup["vision_tl_train_s"] = _run(sys.executable, VTL_TRAIN, params, env)["train_s"]
        if "onnxruntime" in args.backends:  # load time with an empty graph cache (the graph is built), then with it cached
            setup["onnxruntime_first_load_s"] = _run(sys.executable, LOAD, params, env)["load_s"]
            setup["onnxruntime_cached_load_s"] = _run(sys.executable, LOAD, params, env)["load_s"]
            setup["torch_load_s"] = _run(sys.executable, LOAD, {**params, "backend": "torch"}, env)["load_s"]
        runners = list(args.backends)
        if "onnxruntime-int8" in runners:
            why = _quantize(Path(tmp) / "m.vtl", Path(data) / "train", env)
            if why:
                runners.remove("onnxruntime-int8")
                notes.append(f"onnxruntime-int8 skipped: vision-tl quantize: {why}")
        if fastai_ok:
            setup["fastai_train_s"] = _run(FASTAI_PYTHON, FASTAI_TRAIN, params)["train_s"]
        sides = [(f"vision_tl[{r}]", sys.executable, VTL_MEASURE, {"runner": r}) for r in runners]
        if "onnxruntime" in runners:
            sides.append(("floor", sys.executable, FLOOR, {}))
        if fastai_ok:
            sides.append(("fastai", FASTAI_PYTHON, FASTAI_MEASURE, {}))
        rounds: dict[str, list[dict]] = {s[0]: [] for s in sides}
        for k in range(args.rounds):
            for name, python, script, extra in sides[k % len(sides):] + sides[: k % len(sides)]:
                rounds[name].append(_run(python, script, {**params, **extra}, env))
        n_valid = sum(1 for _ in Path(data, "valid").rglob("*.jpg"))
    med = {side: _median(rs) for side, rs in rounds.items() if rs}
    result = {"setup": {**{k: v for k, v in params.items() if k not in ("data", "tmp")}, "n_valid": n_valid,
                        "jpeg_long_side": [300, 500], **setup},
              "uptime": [uptime_start, _uptime()], "notes": notes, "rounds": rounds, "median": med,
              "ratios": _ratios(med)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result, args)
    return result


def _print(result: dict, args: argparse.Namespace) -> None:
    s, med = result["setup"], result["median"]
    print(f"{args.arch} at {args.size} px on CPU ({args.threads} threads), {s['n_valid']} validation JPEGs "
          f"(long side 300-500 px), bs {args.bs}, medians of {args.rounds} rounds")
    print(f"{'':28} {'predict latency':>16} {'batch throughput':>18} {'accuracy':>9} {'load':>8}")
    for side, b in med.items():
        acc = f"{b['accuracy']:9.3f}" if "accuracy" in b else f"{'':9}"
        load = f"{b['load_s']:7.2f}s" if "load_s" in b else ""
        print(f"{side:28} {b['latency_ms']:13.2f} ms {b['throughput']:12.1f} img/s {acc} {load}")
    for side, b in med.items():
        if "runner_ms" in b:
            print(f"  {side} predict, per stage: decode {b['decode_ms']:.2f} ms, resize {b['resize_ms']:.2f} ms, "
                  f"runner {b['runner_ms']:.2f} ms, outputs {b['outputs_ms']:.3f} ms; the rest "
                  f"{b['latency_ms'] - b['decode_ms'] - b['resize_ms'] - b['runner_ms'] - b['outputs_ms']:.2f} ms")
    if "floor" in med:
        f = med["floor"]
        print(f"  floor = decode {f['decode_ms']:.2f} ms + onnxruntime forward {f['forward_b1_ms']:.2f} ms at batch 1, "
              f"{f['forward_bs_img_s']:.0f} img/s at batch {args.bs}")
    for pair, r in result["ratios"].items():
        print(f"{pair:36} latency {r['latency']:6.3f}x  throughput {r['throughput']:6.2f}x")
    extra = {k: round(v, 2) for k, v in s.items() if k.endswith("_s") and v is not None}
    print(f"setup: {extra}")
    print("goals: latency <= 0.25x fastai; throughput >= 2.5x fastai (fp32), >= 3.5x (int8)")
    for u in result["uptime"]:
        print(f"uptime: {u}")
    for n in result["notes"]:
        print(f"note: {n}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
