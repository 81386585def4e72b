"""The benchmark scripts still run: ``benchmarks/gpu.py --smoke`` (its CUDA run cannot be tested here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
