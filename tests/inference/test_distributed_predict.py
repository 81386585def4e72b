"""Batch prediction across processes: ``vision-tl predict`` under torchrun (2 gloo processes on loopback)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from vision_tl.cli import main
from vision_tl.inference.distributed import shard_bounds


@pytest.mark.parametrize("n, world", [(0, 2), (1, 2), (7, 2), (10, 3), (5, 8)])
def test_shards_cover_every_item_once_in_order(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
    assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def _torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
           "VISION_TL_BACKEND": "torch"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vision_tl.cli", "predict", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_torchrun_writes_the_csv_of_a_single_process_run_and_a_bad_file_is_reported_once(
        exported, image_files, tmp_path, capsys):
    path, _ = exported
    files = [str(f) for f in image_files[:11]]  # odd: the ranks get 5 and 6
    assert main(["predict", str(path), *files, "--csv", str(tmp_path / "one.csv"), "--device", "cpu",
                 "--top-k", "2"]) == 0
    capsys.readouterr()
    run = _torchrun([str(path), *files, "--csv", str(tmp_path / "two.csv"), "--device", "cpu", "--top-k", "2"],
                    tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    one, two = (list(csv.reader(open(tmp_path / f))) for f in ("one.csv", "two.csv"))
    assert len(two) == len(one) == 12 and two[0] == one[0]  # the header, then every file once, in order
    for a, b in zip(one[1:], two[1:]):  # a rank's batch of 5 or 6 sums in another order than one of 11
        assert [a[0], a[1], a[3]] == [b[0], b[1], b[3]], (a, b)  # file, label, second label: the same
        assert float(a[2]) == pytest.approx(float(b[2]), abs=1e-5) and float(a[4]) == pytest.approx(float(b[4]), abs=1e-5)
    assert run.stdout.count(files[0]) == 1  # the table is printed once, by rank 0

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    run = _torchrun([str(path), *files[:3], str(bad), *files[3:6], "--csv", str(tmp_path / "bad.csv"),
                     "--device", "cpu"], tmp_path)  # broken.jpg is the 4th of 7: rank 1's first file
    assert run.returncode != 0
    assert run.stderr.count("broken.jpg") == 1, run.stderr[-2000:]
    assert not (tmp_path / "bad.csv").exists()
