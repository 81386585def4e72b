"""`vision-tl train` under torchrun (2 gloo processes) with every tracker, the JSON log and --quiet:
it finishes, only rank 0 logs, each epoch once, and nothing hangs (fastai issue 3845)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .wandb_files import history, read_records


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_every_tracker_under_torchrun_logs_each_epoch_once_from_rank_0(small_folder, tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", "vision_tl.cli", "train",
           str(small_folder), "--arch", "resnet10t", "--no-pretrained", "--size", "32", "--bs", "2", "--epochs", "1",
           "--num-workers", "0", "--device", "cpu", "--out", "m.vtl", "--track", "tensorboard", "--track", "mlflow",
           "--track", "wandb", "--tb-dir", "tb", "--mlflow-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--experiment", "ddp", "--log-json", "log.jsonl", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path / "wb"), "WANDB_DISABLE_GIT": "true",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "wb").mkdir()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-6000:]
    out = proc.stdout.splitlines()
    assert len(out) == 2 and out[0].startswith("valid loss") and out[1].startswith("saved "), proc.stdout  # --quiet

    log = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in log if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1] and [e["event"] for e in log].count("summary") == 1
    valid = [e["valid_loss"] for e in epochs]

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tb = acc.Scalars("epoch/valid_loss")
    assert [e.step for e in tb] == [0, 1] and [e.value for e in tb] == pytest.approx(valid, rel=1e-6)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])  # one run: rank 0's
    hist = sorted(client.get_metric_history(run.info.run_id, "epoch/valid_loss"), key=lambda m: m.step)
    assert [m.step for m in hist] == [0, 1] and [m.value for m in hist] == pytest.approx(valid, rel=1e-6)
    assert run.info.status == "FINISHED" and "m.vtl" in {f.path for f in client.list_artifacts(run.info.run_id)}

    (run_file,) = (tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb")  # one run: rank 0's
    wb = [r for r in history(read_records(run_file)) if "epoch/valid_loss" in r]
    assert [r["epoch"] for r in wb] == [0, 1] and [r["epoch/valid_loss"] for r in wb] == pytest.approx(valid, rel=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "m.vtl", "mlartifacts", "mlflow.db", "tb", "wb"]
