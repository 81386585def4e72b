"""benchmarks/fit_overhead.py runs end to end (tiny settings), and its fastai worker exits when asked."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fit_overhead.py"


def _module():
    spec = importlib.util.spec_from_file_location("fit_overhead", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.parametrize("content", [[], ["--photos"]])
def test_benchmark_times_every_leg_and_reports_ratios(tmp_path, content):
    out = subprocess.run([sys.executable, str(SCRIPT), "--dir", str(tmp_path / "imgs"), "--n-per-class", "8",
                          "--min-side", "40", "--max-side", "48", "--size", "16", "--bs", "4", "--repeats", "1",
                          "--no-fastai", *content], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    for leg in ("raw", "raw_fused", "ours"):
        assert res[f"{leg}_wall_s"] > 0, leg
    assert res["ours_over_raw_wall"] == pytest.approx(res["ours_wall_s"] / res["raw_wall_s"], abs=2e-3)
    assert "repeat 0: ours" in out.stderr and res["images"] == 16
    if content:  # the photo crops: two classes of 8, in the folder given
        assert sorted(p.name for p in (tmp_path / "imgs" / "train").iterdir()) == ["china", "flower"]


def _hold_fds() -> None:
    time.sleep(30)  # a forked child, as a persistent DataLoader worker is: it holds every inherited fd


def test_the_fastai_worker_exits_when_asked_while_forked_children_hold_its_pipe(tmp_path, monkeypatch):
    """Closing stdin is not enough: a forked child of the benchmark keeps the pipe's write end open, so
    a worker waiting for EOF hung the whole benchmark (590 s, killed). It is told to quit instead."""
    mod = _module()
    monkeypatch.setattr(mod, "FASTAI_SCRIPT", (
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    if line.strip() == 'quit':\n"
        "        break\n"
        "    print(json.dumps([1.0, 2.0]), flush=True)\n"))
    args = mod.argparse.Namespace(size=16, bs=4, workers="auto", arch="resnet18", threads=1)
    worker = mod.FastaiWorker(sys.executable, tmp_path, args)
    child = multiprocessing.get_context("fork").Process(target=_hold_fds, daemon=True)
    child.start()
    try:
        assert worker() == (1.0, 2.0)
        t = time.monotonic()
        worker.close()
        assert worker.proc.returncode == 0 and time.monotonic() - t < 20
    finally:
        child.terminate()
        child.join()
