"""``JSONLogger``: one JSON object per line for machines (``vision-tl train --log-json FILE``).

Lines, appended and flushed one at a time (``tail -f`` and ``jq`` read them as they come)::

    {"event": "params", ...the run's hyper-parameters...}
    {"event": "epoch", "epoch": 0, "fit": 0, "train_loss": ..., "valid_loss": ..., "accuracy": ..., "time": 1.9}
    {"event": "summary", "epochs": 4, "final": {...the last epoch...}, "export": "model.vtl"}

``epoch`` counts over every fit of the run (``fine_tune``'s frozen epoch is 0). Non-finite values
are left out (JSON has no NaN). The summary is written by ``finish()`` (the CLI calls it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .base import TrackerBase

__all__ = ["JSONLogger"]


class JSONLogger(TrackerBase):
    """Append the run's parameters, one object per epoch and a final summary to ``fname`` (JSON lines)."""

    def __init__(self, fname: str | Path = "log.jsonl") -> None:
        super().__init__(log_every=1, n_preds=0, log_model=True)
        self.fname = Path(fname)
        self._rows: list[dict[str, Any]] = []
        self._export: str | None = None

    def _write(self, obj: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, default=str) + "\n")

    def _open(self) -> None:
        self.path = self.fname if self.fname.is_absolute() else Path(self.learn.path) / self.fname
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows, self._export = [], None

    def _params(self, params: dict[str, Any]) -> None:
        self._write({"event": "params", **params})

    def _metrics(self, values: dict[str, float], step: int, kind: str) -> None:
        if kind != "epoch":
            return
        rec = self.learn.recorder
        row = {"epoch": step, "fit": self.learn.fit_index, "fit_epoch": self.learn.epoch,
               **{k.removeprefix("epoch/"): v for k, v in values.items()},
               "time": round(float(getattr(rec, "epoch_time", 0.0)), 3), "timestamp": round(time.time(), 3)}
        self._rows.append(row)
        self._write({"event": "epoch", **row})

    def _figure(self, name: str, fig: Any, step: int) -> None:
        pass

    def _file(self, path: Path) -> None:
        self._export = str(path)

    def _close(self) -> None:
        summary: dict[str, Any] = {"event": "summary", "epochs": len(self._rows)}
        if self._rows:
            summary["final"] = {k: v for k, v in self._rows[-1].items() if k not in ("event", "timestamp")}
        if self._export is not None:
            summary["export"] = self._export
        self._write(summary)
