"""One small tracked run shared by the tracker tests: every tracker on, fine_tune(1), export, finish.

The W&B client runs offline (``WANDB_MODE=offline``, files under the run's tmp folder, no network);
MLflow writes to a SQLite store in the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vision_tl.data.synthetic import make_synthetic_folder

from .helpers import small_dls

WANDB_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true",
             "WANDB_DISABLE_CODE": "true"}


@dataclass
class TrackedRun:
    root: Path
    export: Path
    fits: list  # learn.recorder.fits: every epoch's row, per fit
    step_losses: list = field(default_factory=list)  # every training batch's loss, over both fits
    step_lrs: list = field(default_factory=list)
    vocab: list = field(default_factory=list)
    learn: object = None


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory):
    """3 classes x 4 images (9 train / 3 valid with valid_pct=0.25)."""
    return make_synthetic_folder(tmp_path_factory.mktemp("track_data"), n_per_class=4, seed=5)


@pytest.fixture(scope="session")
def tracked_run(tmp_path_factory, small_folder) -> TrackedRun:
    from vision_tl import (
        Callback,
        JSONLogger,
        MLflowCallback,
        TensorBoardCallback,
        WandbCallback,
        accuracy,
        vision_learner,
    )

    root = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**WANDB_ENV, "WANDB_DIR": str(root / "wb")}.items():
            mp.setenv(k, v)
        run = TrackedRun(root=root, export=root / "m.vtl", fits=[])

        class Probe(Callback):
            order = 58  # what the trackers saw, from the learner itself

            def after_batch(self):
                if self.learn.training and self.learn.loss is not None:
                    run.step_losses.append(float(self.learn.loss))
                    run.step_lrs.append(self.learn.group_lrs())

        trackers = [TensorBoardCallback(root / "tb"), MLflowCallback(f"sqlite:///{root}/mlflow.db", experiment="t"),
                    WandbCallback(project="t", dir=root / "wb"), JSONLogger(root / "log.jsonl")]
        learn = vision_learner(small_dls(small_folder, 32), "resnet10t", pretrained=False, metrics=accuracy,
                               path=root, cbs=[*trackers, Probe()], device="cpu", progress=False)
        learn.fine_tune(1)
        learn.export(run.export)
        for t in trackers:
            t.finish()
        run.fits, run.vocab, run.learn = learn.recorder.fits, list(learn.dls.vocab), learn
    return run
