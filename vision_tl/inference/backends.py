"""Where a loaded model's forward pass runs: torch, or onnxruntime on the CPU.

``load_learner(path, backend=...)`` ends here. The onnxruntime backend runs the graph that
``export_onnx`` writes (batch transforms, normalization and the model's final activation inside it),
so both backends take the same uint8 batches and return the same probabilities; a new graph is
checked against torch (within 1e-4) before it is used or cached.

Cache: the graph is built from the ``.vtl`` file on first use and kept next to it as
``.<name>.<first 16 hex digits of the file's SHA-256>.onnx``, written atomically. A cache file is
used only when its name and its own metadata both carry the SHA-256 of the ``.vtl`` as it is now
(and the cache format and vision_tl version that built it); otherwise it is rebuilt, and stale
caches of the same file name are removed. When the folder cannot be written the graph is built in
a temporary folder and used from memory: loading still works, it is just slower every time.

Threads: onnxruntime's intra-op pool gets ``num_threads`` (default ``torch.get_num_threads()``, so
``torch.set_num_threads`` governs both backends). The torch backend's pool is process-wide:
an explicit ``num_threads`` calls ``torch.set_num_threads``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import sibling_temp
from .predict import Predictor

BACKENDS = ("auto", "torch", "onnxruntime")
CACHE_FORMAT = "1"  # bump when the cached graph's contents change meaning
_KEY = "vision_tl.vtl_sha256"
_FORMAT_KEY = "vision_tl.onnx_cache_format"


def check_backend(backend: str, num_threads: int | None = None) -> None:
    """Reject an unknown backend name or a bad thread count, echoing the value."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")


def onnxruntime_available() -> bool:
    """Whether the onnxruntime backend can run here (onnxruntime, plus onnx and onnxscript to build the graph)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


class OrtPredictor(Predictor):
    """A ``Predictor`` whose batch forward (uint8 NCHW -> probabilities) runs in an onnxruntime session.

    It shares everything else with the torch ``Predictor`` it wraps (decoding, item transforms,
    ``predict``/``predict_batch``/``top_k``, ``export``): only ``forward_uint8`` differs. The torch
    model is kept, so the predictor can still be exported again or inspected.
    """

    backend = "onnxruntime"

    def __init__(self, base: Predictor, session: Any) -> None:  # noqa: D107 - see the class docstring
        # take the base predictor's whole state, so attributes added to Predictor later come along
        self.__dict__.update(base.__dict__)
        self.session = session
        self._input = session.get_inputs()[0].name

    @property
    def num_threads(self) -> int:
        """Threads of the onnxruntime intra-op pool."""
        return int(self.session.get_session_options().intra_op_num_threads)

    def to(self, device: str | torch.device) -> OrtPredictor:
        """The onnxruntime backend runs on the CPU only."""
        if torch.device(device).type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU, got device {str(device)!r}: "
                             "load with backend='torch' to use it")
        return self

    def forward_uint8(self, xb: torch.Tensor) -> torch.Tensor:
        """Probabilities (float32, on the CPU) for a uint8 NCHW batch, from onnxruntime."""
        feed = np.ascontiguousarray(xb.detach().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self._input: feed})[0])

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", backend=onnxruntime, threads={self.num_threads})"


def with_backend(pred: Predictor, path: str | Path, backend: str = "auto", num_threads: int | None = None) -> Predictor:
    """``pred`` (a torch ``Predictor`` loaded from ``path``) on the chosen backend.

    ``"auto"``: onnxruntime when ``pred`` is on the CPU, onnxruntime is installed and the model
    exports cleanly (else a warning saying why, and torch); torch on any other device.
    """
    check_backend(backend, num_threads)
    if backend == "onnxruntime":
        if pred.device.type != "cpu":
            raise ValueError(f"backend='onnxruntime' runs on the CPU, got device {str(pred.device)!r}: "
                             "use backend='torch' (or 'auto') there")
        if not onnxruntime_available():
            raise ImportError("backend='onnxruntime' needs onnxruntime, onnx and onnxscript: "
                              "pip install 'vision_tl[onnx]'")
        return OrtPredictor(pred, onnx_session_for(pred, path, num_threads))
    if backend == "auto" and pred.device.type == "cpu" and onnxruntime_available():
        try:
            return OrtPredictor(pred, onnx_session_for(pred, path, num_threads))
        except Exception as e:  # noqa: BLE001 - whatever the exporter raises means "does not export cleanly"
            msg = (str(e).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"load_learner: {str(path)!r} does not run in onnxruntime ({type(e).__name__}: {msg}); "
                          "predicting with torch", stacklevel=3)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    return pred


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cache_path(path: str | Path, sha256: str) -> Path:
    """Where the onnxruntime graph of the ``.vtl`` file ``path`` with content hash ``sha256`` is cached."""
    path = Path(path)
    return path.with_name(f".{path.name}.{sha256[:16]}.onnx")


def session_options(num_threads: int | None = None) -> Any:
    """onnxruntime options: ``num_threads`` (default ``torch.get_num_threads()``) intra-op threads, one inter-op."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = num_threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only: the CPU provider's hints are not the user's business
    return so


def _session(model: str | bytes, num_threads: int | None) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model, sess_options=session_options(num_threads), providers=["CPUExecutionProvider"])


def onnx_session_for(pred: Predictor, path: str | Path, num_threads: int | None = None) -> Any:
    """An onnxruntime session for ``pred`` (loaded from ``path``): from the cache when it is valid, else built."""
    from .. import __version__

    path = Path(path)
    sha = file_sha256(path)
    cache = cache_path(path, sha)
    if cache.is_file():
        try:
            sess = _session(str(cache), num_threads)
            meta = sess.get_modelmeta().custom_metadata_map
            if (meta.get(_KEY), meta.get(_FORMAT_KEY), meta.get("vision_tl_version")) == (sha, CACHE_FORMAT, __version__):
                return sess
        except Exception:  # noqa: BLE001 - a cache onnxruntime cannot read is rebuilt, whatever the reason
            pass
    data = build_graph(pred, sha)
    _write_cache(path, cache, data)
    return _session(data, num_threads)


def build_graph(pred: Predictor, sha256: str) -> bytes:
    """The serialized ONNX graph of ``pred``, tagged with ``sha256``, checked against torch within 1e-4."""
    from .onnx import check_onnx, export_onnx

    with tempfile.TemporaryDirectory(prefix="vision_tl_onnx_") as tmp:
        fname = export_onnx(pred, Path(tmp) / "model.onnx", metadata={_KEY: sha256, _FORMAT_KEY: CACHE_FORMAT})
        check_onnx(fname, pred, atol=1e-4)
        return fname.read_bytes()


def _write_cache(path: Path, cache: Path, data: bytes) -> None:
    """Write ``data`` to ``cache`` atomically and drop stale caches of ``path``; an unwritable folder is skipped."""
    tmp = sibling_temp(cache, ".onnx")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, cache)
    except OSError:  # read-only folder, full disk: the session is built from memory instead
        Path(tmp).unlink(missing_ok=True)
        return
    stale = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{16}}\.onnx")
    for other in path.parent.iterdir():
        if other != cache and stale.fullmatch(other.name):
            other.unlink(missing_ok=True)
