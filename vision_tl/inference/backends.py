"""Which runner a loaded model gets: ``load_learner(path, backend=..., precision=...)`` ends here.

- ``"torch"``: a ``TorchRunner`` of the rebuilt model, on any device.
- ``"onnxruntime"``: an ``OrtRunner`` of the graph ``export_onnx`` writes (batch transforms,
  normalization and the final activation inside it), so both take the same uint8 batches and return
  the same probabilities; a newly built graph is checked against torch (within 1e-4) before it is
  used or cached. CPU only. The graph comes from the per-user cache (``graph_cache.py``), keyed by the
  ``.vtl`` file's SHA-256: loading never writes beside the user's file.
- ``"auto"``: onnxruntime on the CPU when it is installed and the model exports cleanly (else a
  warning saying why, and torch); torch on any other device.

Threads: onnxruntime's intra-op pool gets ``num_threads`` (default ``torch.get_num_threads()``, so
``torch.set_num_threads`` governs both backends). The torch backend's pool is process-wide: an
explicit ``num_threads`` calls ``torch.set_num_threads``.

A new runner (CUDA/TensorRT execution providers, int8) is a class in ``runners.py`` and a branch in
``make_runner``.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import graph_cache
from .quantize import stored_int8
from .runners import OrtInt8Runner, OrtRunner, Runner

if TYPE_CHECKING:
    from .predict import Predictor
    from .vtl import VtlFile

BACKENDS = ("auto", "torch", "onnxruntime")
PRECISIONS = ("fp32", "int8")
CACHE_FORMAT = "2"  # bump when the cached graph's contents change meaning
_KEY = "vision_tl.vtl_sha256"
_FORMAT_KEY = "vision_tl.onnx_cache_format"


def check_backend(backend: str, num_threads: int | None = None, precision: str = "fp32") -> None:
    """Reject an unknown backend or precision, or a bad thread count, echoing the value."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")


def onnxruntime_available() -> bool:
    """Whether the onnxruntime backend can run here (onnxruntime, plus onnx and onnxscript to build the graph)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


def make_runner(pred: Predictor, vtl: VtlFile, backend: str = "auto", num_threads: int | None = None,
                precision: str = "fp32") -> Runner:
    """The runner for ``pred`` (a torch ``Predictor`` rebuilt from ``vtl``) on the chosen backend.

    ``pred.runner`` (torch) is returned for ``"torch"``, for ``"auto"`` off the CPU or without
    onnxruntime, and for ``"auto"`` when the model does not export (with a warning).
    """
    check_backend(backend, num_threads, precision)
    if precision == "int8":
        return int8_runner(pred, vtl, backend, num_threads)
    if backend == "onnxruntime":
        if pred.device.type != "cpu":
            raise ValueError(f"backend='onnxruntime' runs on the CPU, got device {str(pred.device)!r}: "
                             "use backend='torch' (or 'auto') there")
        if not onnxruntime_available():
            raise ImportError("backend='onnxruntime' needs onnxruntime, onnx and onnxscript: "
                              "pip install 'vision_tl[onnx]'")
        return OrtRunner(fp32_session(pred, vtl.sha256, num_threads))
    if backend == "auto" and pred.device.type == "cpu" and onnxruntime_available():
        try:
            return OrtRunner(fp32_session(pred, vtl.sha256, num_threads))
        except Exception as e:  # noqa: BLE001 - whatever the exporter raises means "does not export cleanly"
            msg = (str(e).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"load_learner: {str(vtl.path)!r} does not run in onnxruntime ({type(e).__name__}: {msg}); "
                          "predicting with torch", stacklevel=3)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    return pred.runner


def int8_runner(pred: Predictor, vtl: VtlFile, backend: str = "auto", num_threads: int | None = None) -> OrtInt8Runner:
    """An ``OrtInt8Runner`` of the int8 graph stored in ``vtl`` (never chosen unless asked for: ``precision="int8"``)."""
    if backend == "torch":
        raise ValueError("precision='int8' runs in onnxruntime: use backend='onnxruntime' or 'auto', got 'torch'")
    if pred.device.type != "cpu":
        raise ValueError(f"precision='int8' runs on the CPU (onnxruntime), got device {str(pred.device)!r}")
    graph, report = stored_int8(vtl)  # before the import check: a file without int8 data says how to add it
    if importlib.util.find_spec("onnxruntime") is None:
        raise ImportError("precision='int8' needs onnxruntime: pip install 'vision_tl[onnx]'")
    return OrtInt8Runner(ort_session(graph, num_threads), report)


def session_options(num_threads: int | None = None) -> Any:
    """onnxruntime options: ``num_threads`` (default ``torch.get_num_threads()``) intra-op threads, one inter-op."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = num_threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only: the CPU provider's hints are not the user's business
    return so


def ort_session(model: str | Path | bytes, num_threads: int | None = None) -> Any:
    """A CPU ``InferenceSession`` of ``model`` (a path or the serialized graph)."""
    import onnxruntime as ort

    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=session_options(num_threads), providers=["CPUExecutionProvider"])


def fp32_session(pred: Predictor, sha256: str, num_threads: int | None = None) -> Any:
    """An onnxruntime session of ``pred``'s fp32 graph (its ``.vtl`` file has content hash ``sha256``): from
    the cache when the cached graph is valid, else built, cached (when the cache can be written) and
    loaded from memory."""
    from .. import __version__

    cached = graph_cache.get(sha256)
    if cached is not None:
        try:
            sess = ort_session(cached, num_threads)
            meta = sess.get_modelmeta().custom_metadata_map
            if (meta.get(_KEY), meta.get(_FORMAT_KEY), meta.get("vision_tl_version")) == (sha256, CACHE_FORMAT, __version__):
                return sess
        except Exception:  # noqa: BLE001 - a cached graph onnxruntime cannot read is rebuilt, whatever the reason
            pass
    data = build_graph(pred, sha256)
    graph_cache.put(sha256, data)
    return ort_session(data, num_threads)


def build_graph(pred: Predictor, sha256: str) -> bytes:
    """The serialized ONNX graph of ``pred``, tagged with ``sha256``, checked against torch within 1e-4."""
    from .onnx import check_onnx, export_onnx

    with tempfile.TemporaryDirectory(prefix="vision_tl_onnx_") as tmp:
        fname = export_onnx(pred, Path(tmp) / "model.onnx", metadata={_KEY: sha256, _FORMAT_KEY: CACHE_FORMAT})
        check_onnx(fname, pred, atol=1e-4)
        return fname.read_bytes()
