"""``WandbCallback``: log a fit to Weights & Biases (online, or offline with ``mode="offline"``).

The hyper-parameters go to the run's config, ``train/*`` is plotted against ``train/step``
(batches) and ``epoch/*`` against ``epoch``, the figures as images, and the exported ``.vtl`` file
as a ``model`` artifact. ``WANDB_MODE=offline`` (or ``mode="offline"``) writes the run under
``dir`` without network; ``wandb sync`` uploads it later.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .base import TrackerBase, import_client

__all__ = ["WandbCallback"]


class WandbCallback(TrackerBase):
    """Log to W&B.

    Args:
        project: the W&B project. name: the run's name (W&B picks one when None).
        dir: where the run's files go (W&B's default: ``./wandb``). mode: ``"online"``, ``"offline"``,
            ``"disabled"`` or None (``$WANDB_MODE``).
        init_kwargs: anything else for ``wandb.init`` (``entity``, ``tags``, ``group``, ...).
        log_every, n_preds, log_model: see ``TrackerBase``.
    """

    extra = "wandb"

    def __init__(self, project: str = "vision_tl", name: str | None = None, dir: str | Path | None = None,
                 mode: str | None = None, log_every: int = 1, n_preds: int = 16, log_model: bool = True,
                 **init_kwargs: Any) -> None:
        super().__init__(log_every, n_preds, log_model)
        import_client("wandb", self.extra)
        self.project, self.run_name, self.dir, self.mode, self.init_kwargs = project, name, dir, mode, init_kwargs
        self.run: Any = None

    def _open(self) -> None:
        wandb = import_client("wandb", self.extra)
        if self.dir is not None:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.project, name=self.run_name, dir=None if self.dir is None else str(self.dir),
                              mode=self.mode, reinit="create_new", **self.init_kwargs)
        self.run.define_metric("train/step")
        self.run.define_metric("train/*", step_metric="train/step")
        self.run.define_metric("epoch")
        self.run.define_metric("epoch/*", step_metric="epoch")

    def _params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def _metrics(self, values: dict[str, float], step: int, kind: str) -> None:
        self.run.log({**values, ("train/step" if kind == "step" else "epoch"): step})

    def _figure(self, name: str, fig: Any, step: int) -> None:
        import wandb
        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        buf.seek(0)
        self.run.log({name: wandb.Image(Image.open(buf)), "epoch": step})

    def _file(self, path: Path) -> None:
        import wandb

        art = wandb.Artifact(name=f"{self.run.name or 'model'}-model".replace("/", "-"), type="model")
        art.add_file(str(path))
        self.run.log_artifact(art)

    def _close(self) -> None:
        self.run.finish()
        self.run = None
