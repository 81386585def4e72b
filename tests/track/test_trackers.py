"""Each tracker against its real back end, read back with the back end's own reader: the values equal the Recorder's."""

from __future__ import annotations

import json
import sys

import pytest

from .helpers import epoch_values
from .wandb_files import config, history, read_records

pytestmark = pytest.mark.slow  # one shared fine_tune(1) with every tracker on (tracked_run)

COLUMNS = ("train_loss", "valid_loss", "accuracy")


def test_tensorboard_event_files_hold_the_recorders_values(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked_run.root / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for name in COLUMNS:
        events = acc.Scalars(f"epoch/{name}")
        assert [e.step for e in events] == [0, 1]  # fine_tune(1): the frozen epoch, then the unfrozen one
        assert [e.value for e in events] == pytest.approx(epoch_values(tracked_run, name), rel=1e-6)
    losses = acc.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, len(tracked_run.step_losses) + 1))
    assert [e.value for e in losses] == pytest.approx(tracked_run.step_losses, rel=1e-6)
    assert [e.value for e in acc.Scalars("train/lr_0")] == pytest.approx([lr[0] for lr in tracked_run.step_lrs], rel=1e-6)
    assert {"confusion_matrix", "predictions"} <= set(tags["images"])
    hparams = acc.Tensors("hparams/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| arch | \"resnet10t\" |" in hparams and "batch_size" in hparams and "recipe.base_lr" in hparams
    assert str(tracked_run.export) in acc.Tensors("export/text_summary")[0].tensor_proto.string_val[0].decode()


def test_mlflow_sqlite_store_holds_params_metrics_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracked_run.root}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["arch"] == "resnet10t" and p["recipe"] == "fine_tune" and p["batch_size"] == "4"
    assert p["fit0.frozen_to"] != "0" and p["fit1.frozen_to"] == "0"  # the freeze phases
    for name in COLUMNS:
        hist = sorted(client.get_metric_history(run.info.run_id, f"epoch/{name}"), key=lambda m: m.step)
        assert [m.step for m in hist] == [0, 1]
        assert [m.value for m in hist] == pytest.approx(epoch_values(tracked_run, name), rel=1e-6)
    steps = sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)
    assert [m.value for m in steps] == pytest.approx(tracked_run.step_losses, rel=1e-6)
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"m.vtl", "confusion_matrix.png", "predictions.png"} <= files
    assert (tracked_run.root / "mlartifacts").is_dir()  # next to the store, not in the current folder


def test_wandb_offline_run_files_hold_the_recorders_values(tracked_run):
    (run_file,) = (tracked_run.root / "wb" / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_records(run_file)
    rows = history(records)
    epochs = [r for r in rows if "epoch/valid_loss" in r]
    assert [r["epoch"] for r in epochs] == [0, 1]
    for name in COLUMNS:
        assert [r[f"epoch/{name}"] for r in epochs] == pytest.approx(epoch_values(tracked_run, name), rel=1e-6)
    steps = [r for r in rows if "train/loss" in r]
    assert [r["train/loss"] for r in steps] == pytest.approx(tracked_run.step_losses, rel=1e-6)
    assert [r["train/step"] for r in steps] == list(range(1, len(steps) + 1))
    cfg = config(records)
    assert cfg["arch"] == "resnet10t" and cfg["recipe"] == "fine_tune" and cfg["image_size"] == [32, 32]
    assert any(r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model" for r in records)
    images = {p.name.split("_")[0] for p in run_file.parent.glob("files/media/images/*.png")}
    assert images == {"confusion", "predictions"}


def test_json_log_has_params_one_line_per_epoch_and_a_summary(tracked_run):
    lines = [json.loads(ln) for ln in (tracked_run.root / "log.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "params" and lines[0]["arch"] == "resnet10t"
    epochs = [ln for ln in lines if ln["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1] and [e["fit"] for e in epochs] == [0, 1]
    for name in COLUMNS:
        assert [e[name] for e in epochs] == pytest.approx(epoch_values(tracked_run, name), rel=1e-12)
    assert lines[-1]["event"] == "summary" and lines[-1]["epochs"] == 2
    assert lines[-1]["export"] == str(tracked_run.export) and lines[-1]["final"]["valid_loss"] == epochs[-1]["valid_loss"]


def test_a_missing_client_says_what_to_install(monkeypatch):
    from vision_tl import MissingTrackerError, MLflowCallback, TensorBoardCallback, WandbCallback

    for module, cls, extra in (("wandb", WandbCallback, "wandb"), ("mlflow", MLflowCallback, "mlflow"),
                               ("tensorboard", TensorBoardCallback, "tensorboard")):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails
        with pytest.raises(MissingTrackerError, match=rf"pip install 'vision_tl\[{extra}\]'"):
            cls()
        monkeypatch.delitem(sys.modules, module)
