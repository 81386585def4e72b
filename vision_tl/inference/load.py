"""``load_learner``: a ``.vtl`` file back to a ``Predictor`` with the runner the caller asked for.

The file is read once (``vtl.read_vtl``: checksums, manifest, payloads), the model is rebuilt from the
manifest with ``build_model(cfg, pretrained=False)`` and the weights are loaded strictly; then
``backends.make_runner`` picks torch or onnxruntime. Nothing in the file is ever executed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch

from ..models.build import ModelConfig, build_model
from ..models.preprocess import Preprocess
from .backends import check_backend, make_runner
from .fastai_names import load_name
from .predict import Predictor
from .vtl import ExportFormatError, VtlFile, library_versions, read_vtl

__all__ = ["load_learner"]


def load_learner(fname: str | Path, device: str | torch.device | None = None, cpu: bool | None = None,
                 backend: str | None = None, num_threads: int | None = None, precision: str = "fp32") -> Predictor:
    """Load a ``.vtl`` export as a ``Predictor`` (``.predict``, ``.predict_batch``, ``.top_k``, ``.manifest``).

    The model is rebuilt from the manifest with ``pretrained=False`` (no download, no training
    data) and the weights are loaded strictly. ``device=None`` picks CUDA when available;
    ``cpu=True`` (fastai's spelling) means ``device="cpu"``. ``backend`` runs the forward pass in
    ``"torch"`` or ``"onnxruntime"`` (CPU only; the graph is built once and kept in the per-user cache,
    see ``inference/graph_cache.py``); ``"auto"`` picks onnxruntime on the CPU when it is installed and
    the model exports cleanly, torch otherwise. ``backend=None`` means ``$VISION_TL_BACKEND``, else
    ``"auto"``. ``num_threads`` (default ``torch.get_num_threads()``): see ``inference/backends.py``.
    ``precision``: ``"fp32"`` (default) or ``"int8"``: the int8 graph stored in the file (``export(int8=True)``
    or ``vision-tl quantize``), run by onnxruntime on the CPU; never chosen unless asked for.

    Raises:
        FileNotFoundError: ``fname`` does not exist.
        ExportFormatError: anything else wrong with the file (truncated, edited, foreign format,
            weights that do not fit the manifest, a format version this vision_tl cannot read).
    """
    # int8 runs in onnxruntime only: $VISION_TL_BACKEND (a default for fp32) does not turn it into an error
    backend = backend or ("auto" if precision == "int8" else os.environ.get("VISION_TL_BACKEND")) or "auto"
    check_backend(backend, num_threads, precision)
    if cpu and device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"load_learner: cpu=True contradicts device={device!r}")
    vtl = read_vtl(load_name(Path(fname)))  # fastai's export.pkl finds its .vtl twin
    if device is None:
        device = "cpu" if cpu or precision == "int8" or not torch.cuda.is_available() else "cuda"
    pred = predictor_from_vtl(vtl, device)
    pred.runner = make_runner(pred, vtl, backend, num_threads, precision)
    return pred


def predictor_from_vtl(vtl: VtlFile, device: str | torch.device = "cpu") -> Predictor:
    """A torch ``Predictor`` of the model in ``vtl`` (rebuilt, weights loaded strictly), on ``device``."""
    path, m, sd = vtl.path, vtl.manifest, vtl.state_dict
    try:
        cfg = ModelConfig.from_dict(m["model_config"])
        spec = Preprocess.from_dict(m)  # older manifests have no activation: softmax
        if spec.input_size is None:
            spec = replace(spec, input_size=cfg.input_size)
    except (ValueError, TypeError, KeyError) as e:
        raise ExportFormatError(path, f"the manifest is invalid: {e}") from None
    if m["vocab"] and cfg.n_out != len(m["vocab"]):
        raise ExportFormatError(path, f"manifest n_out is {cfg.n_out} but the vocab has {len(m['vocab'])} classes")
    try:
        model = build_model(cfg, pretrained=False)
    except (ValueError, RuntimeError, KeyError) as e:
        saved = (m.get("versions") or {}).get("timm")
        raise ExportFormatError(
            path, f"cannot build model {cfg.arch!r} (exported with timm {saved}, this is timm "
            f"{library_versions()['timm']}): {e}"
        ) from None
    _check_weights(path, model, sd, m)
    model.load_state_dict(sd, strict=True)
    model.eval()
    multi = m.get("multi_label", False)
    pred = Predictor.from_spec(model, m["vocab"], spec, device=device, model_config=cfg, channels_last=True,
                               multi_label=multi, thresh=m["threshold"] if multi else 0.5)
    pred.manifest = m
    return pred


def _check_weights(path: Path, model: torch.nn.Module, sd: Mapping[str, torch.Tensor], m: dict) -> None:
    """Compare names and shapes before ``load_state_dict``, to say precisely what does not match."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(sd)) if sd[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if keys:
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
    cfg = m["model_config"]
    saved, here = m.get("versions") or {}, library_versions()
    note = "" if saved.get("timm") == here["timm"] else (
        f"; exported with timm {saved.get('timm')}, this is timm {here['timm']}")
    raise ExportFormatError(
        path, f"the weights do not match the model in the manifest (arch {cfg.get('arch')!r}, "
        f"n_out {cfg.get('n_out')}): {'; '.join(parts)}{note}"
    )


