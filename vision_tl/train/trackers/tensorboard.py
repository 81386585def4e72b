"""``TensorBoardCallback``: log a fit to TensorBoard event files (``torch.utils.tensorboard``).

Scalars under ``train/*`` (x: batches) and ``epoch/*`` (x: epochs), the hyper-parameters as a text
table (tag ``hparams``) and at the end in TensorBoard's HPARAMS tab, the figures as images, and the
exported file's path as text (TensorBoard stores no files). Read the folder with
``tensorboard --logdir runs``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .base import TrackerBase, import_client

__all__ = ["TensorBoardCallback"]


class TensorBoardCallback(TrackerBase):
    """Log to TensorBoard event files in ``log_dir`` (default ``learn.path/runs/<date-time>``).

    Args:
        log_dir: the run's folder (one run per callback; a new folder per run when None).
        log_every, n_preds, log_model: see ``TrackerBase``.
    """

    extra = "tensorboard"

    def __init__(self, log_dir: str | Path | None = None, log_every: int = 1, n_preds: int = 16,
                 log_model: bool = True) -> None:
        super().__init__(log_every, n_preds, log_model)
        import_client("tensorboard", self.extra)  # say now, not at the first fit, what is missing
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.writer: Any = None
        self._hparams: dict[str, Any] = {}
        self._last: dict[str, float] = {}

    def _open(self) -> None:
        tb = import_client("torch.utils.tensorboard", self.extra)
        log_dir = self.log_dir or Path(self.learn.path) / "runs" / time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = Path(log_dir)
        self.writer = tb.SummaryWriter(log_dir=str(self.run_dir))

    def _params(self, params: dict[str, Any]) -> None:
        self._hparams.update(params)
        rows = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in params.items())
        self.writer.add_text("hparams", "| name | value |\n|---|---|\n" + rows, global_step=self.fits_logged)

    def _metrics(self, values: dict[str, float], step: int, kind: str) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, global_step=step)
        if kind == "epoch":
            self._last = values

    def _figure(self, name: str, fig: Any, step: int) -> None:
        self.writer.add_figure(name, fig, global_step=step, close=False)

    def _file(self, path: Path) -> None:
        self.writer.add_text("export", str(path), global_step=max(self.epochs_logged - 1, 0))

    def _flush(self) -> None:
        self.writer.flush()

    def _close(self) -> None:
        if self._last:  # the HPARAMS tab: this run's parameters against its final results
            hp = {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in self._hparams.items()}
            self.writer.add_hparams(hp, {f"hparam/{k}": v for k, v in self._last.items()}, run_name=".")
        self.writer.close()
        self.writer = None
