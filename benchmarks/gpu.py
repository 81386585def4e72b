"""The GPU path in one command: training and prediction throughput on one CUDA device, as JSON.

    python benchmarks/gpu.py               # on a CUDA machine: under 5 minutes, prints one JSON object
    python benchmarks/gpu.py --smoke       # the same code, tiny, on the CPU (a test runs it so it cannot rot)

What it measures (resnet50 at 224 px, random init, AMP + channels-last, cudnn.benchmark on for all):

- ``data``: a folder of photo-sized JPEGs (375-500 px sides) written first; not timed.
- ``fine_tune``: ``vision_learner(...).fine_tune(epochs, freeze_epochs=1)`` on that folder, through the
  toolkit's loaders (``item_tfms=Resize(224)``, ``aug_transforms()``); throughput of the last unfrozen
  training phase (img/s, GPU-synchronised) and the wall time of the whole recipe.
- ``raw_synthetic``: a plain PyTorch loop (forward, loss, backward, AdamW step, same autocast dtype and
  channels-last) on the same model with random input already on the device: the compute floor.
- ``raw_loaders``: the same loop fed by the toolkit's train loader: whether decoding keeps up.
- ``predict``: ``load_learner(export, device="cuda").predict_batch(files)`` img/s and one-image latency.
- ``jpeg_decode``: decode + resize to 224 of the same JPEGs, on the CPU with the toolkit's decoder
  (all cores, threads) and on the GPU with ``torchvision.io.decode_jpeg(device="cuda")``.
- ``peak_memory_mib`` for each phase, and ``hardware`` (GPU, CUDA, cuDNN, CPU cores, versions).
- ``ratios``: fine_tune / raw_synthetic (goal >= 0.9), raw_loaders / raw_synthetic, and the decoders
  against the training rate.

Every phase is bounded in iterations; a phase that would start after ``--budget-s`` is skipped and
listed in ``skipped``. Without CUDA (and without ``--smoke``) it exits with status 1 and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

FULL = dict(arch="resnet50", size=224, bs=128, n_per_class=1200, classes=4, min_side=375, max_side=500,
            epochs=2, raw_warmup=15, raw_steps=60, loader_steps=40, decode_images=1024, predict_images=2048,
            workers=None)  # None: the toolkit's default loader workers
SMOKE = dict(arch="resnet10t", size=32, bs=4, n_per_class=6, classes=2, min_side=48, max_side=64,
             epochs=1, raw_warmup=1, raw_steps=2, loader_steps=2, decode_images=8, predict_images=8, workers=0)


def hardware(device: Any) -> dict:
    import timm
    import torch

    import vision_tl

    hw = {"device": str(device), "cpu_cores": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
          "vision_tl": vision_tl.__version__}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        hw.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                  cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported())
    return hw


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Phase:
    """Times a block (GPU-synchronised) and records the peak GPU memory it reached."""

    def __init__(self, device: Any) -> None:
        self.device = device

    def __enter__(self) -> Phase:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        sync(self.device)
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        sync(self.device)
        self.s = time.perf_counter() - self.t
        cuda = self.device.type == "cuda"
        self.peak_mib = round(torch.cuda.max_memory_allocated(self.device) / 2**20) if cuda else None


def make_dls(data: Path, cfg: dict, device: Any) -> Any:
    from vision_tl import ImageDataLoaders, Resize, aug_transforms

    return ImageDataLoaders.from_folder(data, valid_pct=0.1, seed=0, item_tfms=Resize(cfg["size"]),
                                        batch_tfms=aug_transforms(), bs=cfg["bs"], device=device,
                                        num_workers=cfg["workers"])


def bench_fine_tune(data: Path, cfg: dict, device: Any, out: Path) -> tuple[dict, Path]:
    """fine_tune through the toolkit; img/s of the last training phase (the unfrozen model)."""
    from vision_tl import Callback, vision_learner

    class TrainTimer(Callback):
        def before_train(self) -> None:
            sync(device)
            self.t, self.n = time.perf_counter(), 0

        def after_batch(self) -> None:
            if self.learn.training:
                self.n += len(self.learn.xb[0])

        def after_train(self) -> None:
            sync(device)
            self.last = self.n / (time.perf_counter() - self.t)

    timer = TrainTimer()
    learn = vision_learner(make_dls(data, cfg, device), cfg["arch"], pretrained=False, device=device, cbs=[timer])
    learn.remove_cb(learn.progress)
    with Phase(device) as ph:
        learn.fine_tune(cfg["epochs"], freeze_epochs=1)
    path = learn.export(out / "model.vtl", verbose=False)
    amp = [type(c).__name__ for c in learn.cbs if type(c).__name__ in ("MixedPrecision", "ChannelsLast")]
    return {"train_img_s": round(timer.last, 1), "wall_s": round(ph.s, 2), "epochs": f"1 frozen + {cfg['epochs']}",
            "n_train": len(learn.dls.train.dataset), "callbacks": amp, "peak_memory_mib": ph.peak_mib}, path


def raw_loop(cfg: dict, device: Any, batches: Any, steps: int, warmup: int) -> dict:
    """forward/loss/backward/AdamW on the same model, autocast + channels-last as the Learner uses on CUDA."""
    import torch
    from torch import nn

    from vision_tl import ModelConfig
    from vision_tl.models.build import build_model

    model = build_model(ModelConfig(arch=cfg["arch"], n_out=cfg["classes"]), pretrained=False).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and dtype == torch.float16)
    loss_func = nn.CrossEntropyLoss()

    def step(xb: Any, yb: Any) -> None:
        xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=cuda):
            loss = loss_func(model(xb), yb)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    n = 0
    with Phase(device) as ph:
        for _ in range(steps):
            xb, yb = next(it)
            step(xb, yb)
            n += len(xb)
    return {"img_s": round(n / ph.s, 1), "steps": steps, "autocast": str(dtype) if cuda else None,
            "peak_memory_mib": ph.peak_mib}


def synthetic_batches(cfg: dict, device: Any) -> Any:
    """One normalized random batch already on the device, forever: no input cost at all."""
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(cfg["bs"], 3, cfg["size"], cfg["size"], device=device, generator=g)
    y = torch.randint(0, cfg["classes"], (cfg["bs"],), device=device, generator=g)
    while True:
        yield x, y


def loader_batches(data: Path, cfg: dict, device: Any) -> Any:
    dl = make_dls(data, cfg, device).train
    while True:
        yield from dl


def bench_predict(vtl: Path, files: list[Path], device: Any) -> dict:
    from vision_tl import load_learner

    pred = load_learner(vtl, device=device, backend="torch")  # what "auto" picks on a GPU
    pred.predict_batch(files[: min(len(files), 256)], progress=False)  # warm-up: cudnn, workers, allocator
    with Phase(device) as ph:
        pred.predict_batch(files, bs=256, progress=False)
    for f in files[:5]:
        pred.predict(f)
    times = []
    for f in files[:50]:
        t = time.perf_counter()
        pred.predict(f)
        times.append(time.perf_counter() - t)
    times.sort()
    return {"backend": pred.backend, "batch_img_s": round(len(files) / ph.s, 1), "bs": 256,
            "latency_ms_median": round(1000 * times[len(times) // 2], 2), "peak_memory_mib": ph.peak_mib}


def bench_decode(files: list[Path], size: int, device: Any) -> dict:
    """Decode + resize to ``size``: the toolkit's CPU decoder on every core vs torchvision's GPU decoder."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg, read_file

    from vision_tl import Predictor, Resize

    tfm = [Resize(size)]
    decode_one = Predictor(torch.nn.Identity(), ["x"], tfm, None, device="cpu").preprocess
    cores = os.cpu_count() or 1
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(decode_one, files[:cores]))
        t = time.perf_counter()
        list(pool.map(decode_one, files))
        cpu_rate = len(files) / (time.perf_counter() - t)
    raw = [read_file(str(f)) for f in files]
    chunk = 128

    def gpu_decode() -> None:
        for i in range(0, len(raw), chunk):
            imgs = decode_jpeg(raw[i : i + chunk], device=device)
            torch.stack([F.interpolate(im[None].float(), size=(size, size), mode="bilinear", antialias=True)[0]
                         for im in imgs]).to(torch.uint8)

    gpu_decode()  # warm-up: nvjpeg handles
    with Phase(device) as ph:
        gpu_decode()
    return {"cpu_toolkit_img_s": round(cpu_rate, 1), "cpu_threads": cores,
            f"{device.type}_decode_jpeg_img_s": round(len(files) / ph.s, 1), "n_images": len(files)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="run the same code tiny on the CPU (seconds)")
    ap.add_argument("--budget-s", type=float, default=240, help="skip phases that would start after this (default: 240)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)

    import torch

    if not args.smoke and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False); "
                 "run it on a GPU machine, or pass --smoke to check the script on the CPU")
    cfg = SMOKE if args.smoke else FULL
    device = torch.device("cpu" if args.smoke else "cuda")
    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    result: dict = {"hardware": hardware(device), "setup": {**cfg, "smoke": args.smoke}, "skipped": []}

    def run(name: str, fn: Any) -> Any:
        if time.perf_counter() - start > args.budget_s:
            result["skipped"].append(name)
            return None
        result[name] = fn()
        return result[name]

    from vision_tl import make_synthetic_folder

    with tempfile.TemporaryDirectory() as tmp:
        work = args.dir or Path(tmp)
        t = time.perf_counter()
        data = make_synthetic_folder(work / "data", classes=[f"c{i}" for i in range(cfg["classes"])],
                                     n_per_class=cfg["n_per_class"], seed=0, min_side=cfg["min_side"],
                                     max_side=cfg["max_side"])
        files = sorted(data.rglob("*.jpg"))
        result["data"] = {"n_images": len(files), "sides": [cfg["min_side"], cfg["max_side"]],
                          "write_s": round(time.perf_counter() - t, 1)}
        ft, vtl = bench_fine_tune(data, cfg, device, work)
        result["fine_tune"] = ft
        run("raw_synthetic", lambda: raw_loop(cfg, device, synthetic_batches(cfg, device), cfg["raw_steps"],
                                              cfg["raw_warmup"]))
        run("raw_loaders", lambda: raw_loop(cfg, device, loader_batches(data, cfg, device), cfg["loader_steps"], 2))
        run("predict", lambda: bench_predict(vtl, files[: cfg["predict_images"]], device))
        run("jpeg_decode", lambda: bench_decode(files[: cfg["decode_images"]], cfg["size"], device))
    result["ratios"] = ratios(result)
    result["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))
    return result


def ratios(r: dict) -> dict:
    floor = (r.get("raw_synthetic") or {}).get("img_s")
    if not floor:
        return {}
    out = {"fine_tune_over_raw_synthetic": round(r["fine_tune"]["train_img_s"] / floor, 3)}  # goal >= 0.9
    if r.get("raw_loaders"):
        out["raw_loaders_over_raw_synthetic"] = round(r["raw_loaders"]["img_s"] / floor, 3)
    for k, v in (r.get("jpeg_decode") or {}).items():
        if k.endswith("_img_s"):
            out[f"{k.removesuffix('_img_s')}_over_training_rate"] = round(v / floor, 3)
    return out


if __name__ == "__main__":
    main()
