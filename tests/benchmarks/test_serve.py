"""``benchmarks/serve.py --smoke`` still runs end to end (figures are not asserted: the machine is shared)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_benchmark_smoke_reports_every_phase_without_errors():
    import json

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "serve.py"), "--smoke", "--json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    for phase in ("sequential_1", "concurrent", "sequential_2"):
        assert out[phase]["requests"] > 0 and out[phase]["errors"] == 0, phase
        assert out[phase]["p50_ms"] <= out[phase]["p99_ms"]
    assert out["concurrent"]["rss_after_200_mb"] > 0 and out["server"]["exit_code"] == 0
    assert out["concurrent_over_sequential"] > 0 and "load average" in out["uptime"]
