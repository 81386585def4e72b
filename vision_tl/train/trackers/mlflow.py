"""``MLflowCallback``: log a fit to an MLflow tracking store (a server, ``sqlite:///runs.db``, a folder).

It talks through ``MlflowClient`` (no global ``mlflow.set_tracking_uri`` / active run): parameters,
metrics with their step (``train/*``: batches, ``epoch/*``: epochs), the figures and the exported
``.vtl`` file as artifacts. With a ``sqlite:///FILE`` store and no ``artifact_location``, artifacts go
to ``mlartifacts/`` next to FILE (MLflow's default would be the current folder).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from .base import TrackerBase, import_client

__all__ = ["MLflowCallback"]

_MAX_PARAM = 6000  # MLflow's limit on a parameter value's length


class MLflowCallback(TrackerBase):
    """Log to MLflow.

    Args:
        tracking_uri: the store (``http://host:5000``, ``sqlite:///mlflow.db``, ``file:./mlruns``);
            None: ``$MLFLOW_TRACKING_URI``, else MLflow's default.
        experiment: the experiment's name (created when missing).
        run_name: the run's name (MLflow picks one when None).
        artifact_location: where a new experiment stores files (see the module docstring).
        log_every, n_preds, log_model: see ``TrackerBase``.
    """

    extra = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str = "vision_tl", run_name: str | None = None,
                 artifact_location: str | None = None, log_every: int = 1, n_preds: int = 16,
                 log_model: bool = True) -> None:
        super().__init__(log_every, n_preds, log_model)
        import_client("mlflow", self.extra)
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.artifact_location = artifact_location
        self.client: Any = None
        self.run_id: str | None = None

    def _artifacts(self) -> str | None:
        if self.artifact_location is not None:
            return self.artifact_location
        uri = self.tracking_uri or ""
        if uri.startswith("sqlite:///"):
            return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
        return None

    def _open(self) -> None:
        tracking = import_client("mlflow.tracking", self.extra)
        self.client = tracking.MlflowClient(tracking_uri=self.tracking_uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(
            self.experiment, artifact_location=self._artifacts())
        self.run_id = self.client.create_run(exp_id, run_name=self.run_name).info.run_id

    def _params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items()])

    def _metrics(self, values: dict[str, float], step: int, kind: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def _figure(self, name: str, fig: Any, step: int) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        from PIL import Image

        buf.seek(0)
        self.client.log_image(self.run_id, Image.open(buf), f"{name}.png")

    def _file(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def _close(self) -> None:
        self.client.set_terminated(self.run_id)
        self.run_id = None
