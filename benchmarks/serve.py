"""`vision-tl serve` under load on loopback: does dynamic batching pay, are there errors, does memory grow?

One run, one server process (``python -m vision_tl.cli serve``, default settings but the backend),
driven by asyncio httpx clients in this process, all on 127.0.0.1:

1. warm-up (20 requests);
2. sequential: one client, one image per request, ``--seq`` requests;
3. concurrent: ``--clients`` clients, ``--requests`` requests in all (bounded count and time), the
   server's RSS read from /proc after the first 200 and after all of them;
4. sequential again (the median of the two sequential phases is the reference).

Reported per phase: requests, errors (anything but 200), throughput (requests/s), p50/p95/p99 latency
(ms); the ratio concurrent/sequential throughput; RSS after 200 and after all requests and the growth.
The model is ``--arch`` (random init, no download) at ``--size`` px; the images are distinct
photo-sized JPEGs sent as raw bodies. Run it under ``flock /tmp/vtl-bench.lock`` on a shared machine.

Usage::

    python benchmarks/serve.py                              # resnet18, 64 px, 16 clients, 2,000 requests
    python benchmarks/serve.py --backend onnxruntime --json
    python benchmarks/serve.py --smoke                      # seconds: checks the script still runs
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _images(n: int, seed: int = 0) -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arr = rng.integers(0, 256, (240 + i % 7 * 8, 320, 3), dtype=np.uint8)
        arr[: arr.shape[0] // 2] //= 2
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _export(arch: str, size: int, path: Path) -> Path:
    from vision_tl import ModelConfig, Predictor, Resize, build_model, imagenet_stats

    cfg = ModelConfig(arch=arch, n_out=10, input_size=(size, size))
    model = build_model(cfg, pretrained=False).eval()
    return Predictor(model, [f"class{i}" for i in range(10)], [Resize(size)], imagenet_stats, device="cpu",
                     model_config=cfg).export(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _summary(latencies: list[float], errors: int, seconds: float) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100) if len(ms) > 1 else ms * 99
    n = len(latencies) + errors
    return {"requests": n, "errors": errors, "req_s": round(n / seconds, 1), "p50_ms": round(q[49], 1),
            "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1), "seconds": round(seconds, 2)}


async def _phase(url: str, images: list[bytes], clients: int, total: int, max_seconds: float,
                 pid: int | None = None, rss_at: int = 200) -> dict:
    """``total`` requests from ``clients`` concurrent clients (stops early after ``max_seconds``)."""
    import httpx

    latencies: list[float] = []
    errors, sent, rss = 0, 0, {}
    deadline = time.monotonic() + max_seconds

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while sent < total and time.monotonic() < deadline:
            i, sent = sent, sent + 1
            t = time.perf_counter()
            try:
                r = await c.post("/predict", content=images[i % len(images)], headers={"Content-Type": "image/jpeg"})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1
            if pid is not None and len(latencies) + errors == rss_at:
                rss["rss_after_200_mb"] = round(_rss_mb(pid), 1)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        seconds = time.perf_counter() - start
    out = _summary(latencies, errors, seconds)
    if pid is not None:
        out.update(rss)
        out["rss_after_all_mb"] = round(_rss_mb(pid), 1)
    return out


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vtl-serve-bench-"))
    model = _export(args.arch, args.size, tmp / "model.vtl")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "VISION_TL_API_KEY": ""}
    cmd = [sys.executable, "-m", "vision_tl.cli", "serve", str(model), "--port", str(port), "--backend", args.backend,
           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(1200):  # up to ~4 minutes on a loaded machine
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("the server did not get ready")
        images = _images(32)
        asyncio.run(_phase(url, images, 1, 20, 60))
        seq1 = asyncio.run(_phase(url, images, 1, args.seq, args.max_seconds))
        conc = asyncio.run(_phase(url, images, args.clients, args.requests, args.max_seconds, pid=proc.pid))
        seq2 = asyncio.run(_phase(url, images, 1, args.seq, args.max_seconds))
        batches = [line for line in httpx.get(url + "/metrics").text.splitlines()
                   if line.startswith(("vision_tl_batch_size_sum", "vision_tl_batch_size_count"))]
    finally:
        proc.terminate()
        code = proc.wait(120)
        log.close()
    seq_req_s = statistics.median([seq1["req_s"], seq2["req_s"]])
    growth = (conc["rss_after_all_mb"] - conc.get("rss_after_200_mb", float("nan"))) / conc.get("rss_after_200_mb", 1)
    sums = {line.split()[0]: float(line.split()[1]) for line in batches}
    return {
        "model": f"{args.arch} at {args.size} px, 10 classes", "backend": args.backend,
        "server": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "exit_code": code},
        "sequential_1": seq1, "concurrent": {"clients": args.clients, **conc}, "sequential_2": seq2,
        "concurrent_over_sequential": round(conc["req_s"] / seq_req_s, 2),
        "rss_growth_pct": round(100 * growth, 1),
        "mean_batch_size": round(sums.get("vision_tl_batch_size_sum", 0) / max(1, sums.get("vision_tl_batch_size_count", 1)), 2),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--backend", default="torch", choices=["auto", "torch", "onnxruntime"])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=2000, help="concurrent phase, in all")
    p.add_argument("--seq", type=int, default=200, help="each sequential phase")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-seconds", type=float, default=300, help="bound on each phase")
    p.add_argument("--smoke", action="store_true", help="a few requests only (checks the script runs)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.smoke:
        args.arch, args.size, args.clients, args.requests, args.seq = "resnet10t", 32, 4, 220, 10
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    c, s1, s2 = r["concurrent"], r["sequential_1"], r["sequential_2"]
    print(f"{r['model']}, backend {r['backend']}, max_batch {r['server']['max_batch']}, "
          f"max_wait {r['server']['max_wait_ms']} ms")
    for name, ph in (("sequential 1", s1), (f"{c['clients']} concurrent", c), ("sequential 2", s2)):
        print(f"  {name:14s} {ph['requests']:5d} req, {ph['errors']} errors, {ph['req_s']:7.1f} req/s, "
              f"p50 {ph['p50_ms']} / p95 {ph['p95_ms']} / p99 {ph['p99_ms']} ms")
    print(f"  concurrent / sequential throughput: {r['concurrent_over_sequential']}x "
          f"(mean batch {r['mean_batch_size']})")
    print(f"  server RSS: {c.get('rss_after_200_mb')} MB after 200, {c['rss_after_all_mb']} MB after "
          f"{c['requests']} requests ({r['rss_growth_pct']:+.1f}%); exit code {r['server']['exit_code']}")
    print(f"  {r['uptime']}")


if __name__ == "__main__":
    main()
