"""benchmarks/data_pipeline.py runs end to end (tiny settings) and refuses to write into a user's folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data_pipeline.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_benchmark_prints_throughput(tmp_path):
    out = _run("--dir", str(tmp_path / "imgs"), "--n", "12", "--passes", "1", "--workers", "0", "--bs", "4",
               "--no-fastai")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "vision_tl:" in out.stdout and "img/s" in out.stdout
    assert len(list((tmp_path / "imgs").glob("*.jpg"))) == 12


def test_benchmark_times_the_datablock_path(tmp_path):
    out = _run("--dir", str(tmp_path / "imgs"), "--n", "12", "--passes", "1", "--workers", "0", "--bs", "4",
               "--no-fastai", "--datablock")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DataBlock" in out.stdout and "vision_tl:" in out.stdout


def test_benchmark_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.jpg").write_bytes(b"precious")
    out = _run("--dir", str(tmp_path), "--n", "4", "--no-fastai")
    assert out.returncode != 0 and "not empty" in out.stderr
    assert (tmp_path / "mine.jpg").read_bytes() == b"precious"
