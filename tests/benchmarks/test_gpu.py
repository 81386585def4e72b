"""The benchmark scripts still run: ``benchmarks/gpu.py --smoke`` (its CUDA run cannot be tested here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_every_phase_on_the_cpu():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke"], capture_output=True,
                         text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert r["skipped"] == [] and r["hardware"]["device"] == "cpu"
    for phase, key in [("fine_tune", "train_img_s"), ("raw_synthetic", "img_s"), ("raw_loaders", "img_s"),
                       ("predict", "batch_img_s"), ("jpeg_decode", "cpu_decode_jpeg_img_s")]:
        assert r[phase][key] > 0, phase
    assert set(r["ratios"]) >= {"fine_tune_over_raw_synthetic", "raw_loaders_over_raw_synthetic"}


def test_gpu_benchmark_without_cuda_exits_nonzero_saying_why():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py")], capture_output=True, text=True,
                         env=ENV, timeout=300)
    assert out.returncode != 0 and "no CUDA device" in out.stderr and "--smoke" in out.stderr
    assert out.stdout == ""


def test_predict_benchmark_reports_each_runner_against_fastai_and_the_floor_from_medians():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_predict", REPO / "benchmarks" / "predict.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rounds = {"vision_tl[onnxruntime]": [{"latency_ms": 3.0, "throughput": 700.0}, {"latency_ms": 2.5, "throughput": 650.0},
                                         {"latency_ms": 2.0, "throughput": 600.0}],
              "fastai": [{"latency_ms": 12.5, "throughput": 260.0}],
              "floor": [{"latency_ms": 2.0, "throughput": 800.0, "decode_ms": 0.4}]}
    med = {side: bench._median(rs) for side, rs in rounds.items()}
    assert med["vision_tl[onnxruntime]"] == {"latency_ms": 2.5, "throughput": 650.0}  # median of each figure
    assert bench._ratios(med) == {"vision_tl[onnxruntime] / fastai": {"latency": 0.2, "throughput": 2.5},
                                  "vision_tl[onnxruntime] / floor": {"latency": 1.25, "throughput": 0.812}}


def test_the_benchmark_photos_are_real_photo_crops_of_the_asked_sizes(tmp_path):
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location("bench_predict", REPO / "benchmarks" / "predict.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = bench.make_photo_folder(tmp_path, n_train=2, n_valid=3)
    files = sorted(root.rglob("*.jpg"))
    assert len(files) == 10 and {f.parent.name for f in files} == {"china", "flower"}
    for f in files:
        with Image.open(f) as im:
            assert 300 <= max(im.size) <= 500 and im.format == "JPEG"
            assert len(set(im.convert("L").getdata())) > 50  # photo content, not a flat square
