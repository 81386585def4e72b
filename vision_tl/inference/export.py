"""Export a trained learner to one ``.vtl`` file and load it back, without pickle.

A ``.vtl`` file is a safetensors file: the tensors are the model's state dict, and the header's
``__metadata__`` holds a JSON manifest (format name and version, ``ModelConfig``, vocab, the
validation item transforms, normalization stats, input size, library versions, a SHA-256 of the
weights) plus a SHA-256 of the manifest itself. Loading parses JSON and raw tensors only, rebuilds
the model with ``build_model(cfg, pretrained=False)`` and loads the weights strictly: nothing in the
file is ever executed. Every way a file can be wrong raises an ``ExportFormatError`` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..files import sibling_temp
from ..models.build import ModelConfig, build_model
from ..models.preprocess import ACTIVATIONS, Preprocess
from .backends import check_backend, with_backend
from .predict import Predictor
from .train_items import train_items_entry

FORMAT_NAME = "vision_tl.learner"
FORMAT_VERSION = 2  # bump when the manifest changes incompatibly (2: multi-label models)
MIN_FORMAT_VERSION = 1  # the oldest format this version still reads
MANIFEST_KEY = "vision_tl.manifest"
MANIFEST_SHA_KEY = "vision_tl.manifest_sha256"
_MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not one of ours


class ExportFormatError(ValueError):
    """A file that is not a usable vision_tl export; ``.path`` names it, the message says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot load {str(self.path)!r}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def _versions() -> dict[str, str]:
    import timm

    from .. import __version__

    return {"vision_tl": __version__, "torch": torch.__version__, "timm": timm.__version__}


def weights_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """A SHA-256 over names, dtypes, shapes and bytes of ``tensors`` (independent of file layout)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def build_manifest(predictor: Predictor) -> dict[str, Any]:
    """The JSON-able manifest describing ``predictor`` (everything but the weights)."""
    cfg = predictor.model_config
    if cfg is None:
        raise ValueError(
            "export needs the ModelConfig the model was built from (learn.model_config), got None: "
            "models built by vision_learner have one; for a custom model save its state_dict instead"
        )
    return {
        "format": FORMAT_NAME,
        # softmax classifiers stay version 1 (readable by older vision_tl); multi-label (sigmoid) and regression
        # (no activation) files are version 2, so an older vision_tl refuses them instead of applying a softmax
        "format_version": 1 if predictor.activation == "softmax" else 2,
        **decode_fields(predictor),
        # the size the model was trained for, not its architecture's default (one input size in the manifest)
        "model_config": {**cfg.to_dict(), "input_size": _trained_size(predictor, cfg)},
        "vocab": list(predictor.vocab),
        **predictor.spec.to_dict(),  # item_tfms, batch_tfms, normalize, input_size, activation
        "versions": _versions(),
    }


def _trained_size(predictor: Predictor, cfg: Any) -> list[int] | None:
    size = predictor.spec.input_size or cfg.input_size
    return None if size is None else list(size)


def decode_fields(predictor: Predictor) -> dict[str, Any]:
    """How outputs become predictions: ``multi_label``, ``activation`` (``"sigmoid"``/``"softmax"``) and the
    multi-label ``threshold`` (None for a single-label model)."""
    multi = predictor.multi_label
    return {"multi_label": multi, "activation": predictor.activation, "threshold": predictor.thresh if multi else None}


def _canonical_header(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its ``__metadata__`` keys in sorted order.

    safetensors writes the metadata from an unordered map, so the same weights and manifest could
    give different bytes from one export to the next; sorting makes an export reproducible (same
    learner, same file hash). The header keeps its length, so no offset moves; if re-encoding ever
    changed the length the file is returned as written, which is just as valid.
    """
    (n,) = struct.unpack("<Q", data[:8])
    raw = data[8 : 8 + n].rstrip(b" ")
    header = json.loads(raw)
    if not isinstance(header.get("__metadata__"), dict):
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    out = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(out) != len(raw):
        return data
    return data[:8] + out + data[8 + len(raw) :]


def write_vtl(fname: str | Path, tensors: Mapping[str, torch.Tensor], manifest: dict[str, Any]) -> Path:
    """Write ``tensors`` + ``manifest`` (the weights hash is added) atomically to ``fname``.

    The file is written next to its destination under a temporary name and moved into place with
    ``os.replace``: a crash mid-write leaves any earlier file intact. An existing file of the same
    name is replaced (like fastai's ``export``), with a warning naming it. Same input, same bytes.
    """
    from safetensors.torch import save

    path = Path(fname)
    if path.is_dir():
        raise ValueError(f"export destination {str(path)!r} is a directory, expected a file name")
    if path.exists():
        warnings.warn(f"export: replacing the existing file {str(path)!r}", stacklevel=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    manifest = {**manifest, "weights_sha256": weights_sha256(tensors)}
    text = json.dumps(manifest, sort_keys=True)
    meta = {MANIFEST_KEY: text, MANIFEST_SHA_KEY: hashlib.sha256(text.encode()).hexdigest()}
    if manifest.get("normalize"):  # plain keys, so the file can seed vision_learner(weights=...) with its stats
        meta.update({k: json.dumps(manifest["normalize"][k]) for k in ("mean", "std")})
    tmp = sibling_temp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(_canonical_header(save(tensors, metadata=meta)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_predictor(predictor: Predictor, fname: str | Path) -> Path:
    """Write ``predictor`` (model weights + manifest) to one ``.vtl`` file; returns its path."""
    return write_vtl(fname, predictor.model.state_dict(), build_manifest(predictor))


def export_learner(learn: Any, fname: str | Path = "export.vtl") -> Path:
    """``learn.export``: write the learner's model, vocab and valid transforms to one ``.vtl`` file.

    A relative ``fname`` is taken relative to ``learn.path`` (as in fastai). Label functions,
    callbacks and other Python objects of the training setup are not saved and cannot break export.
    """
    path = Path(fname)
    if not path.is_absolute() and getattr(learn, "path", None) is not None:
        path = Path(learn.path) / path
    predictor = Predictor.from_learner(learn)
    return write_vtl(path, predictor.model.state_dict(), build_manifest(predictor) | train_items_entry(learn))


def _sniff_foreign(path: Path, head: bytes) -> None:
    """Raise a clear error for pickles and ``torch.save`` checkpoints (fastai ``.pkl``, ``.pth``)."""
    if head[:4] == b"PK\x03\x04":  # torch.save's zip format: fastai export() and learn.save()
        what = "a PyTorch checkpoint (torch.save / learn.save)"
        try:
            with zipfile.ZipFile(path) as z:  # read raw bytes only: nothing is unpickled
                pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if pkl is not None and b"fastai" in z.read(pkl):
                    what = "a fastai export (a pickled Learner)"
        except (zipfile.BadZipFile, OSError):
            pass
        raise ExportFormatError(
            path, f"it is {what}, not a vision_tl export; vision_tl never unpickles files. "
            "Export the learner with vision_tl's learn.export('model.vtl') instead"
        )
    if head[:1] == b"\x80":
        raise ExportFormatError(
            path, "it is a Python pickle (e.g. a fastai .pkl), not a vision_tl export; "
            "vision_tl never unpickles files"
        )


def _dims(size: Any) -> str:
    return "x".join(map(str, size)) if size else ""


def _stats(xs: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.3f}" for x in xs) + ")"


def describe_manifest(m: dict[str, Any], n_bytes: int) -> str:
    """A short human summary of a .vtl manifest (``vision-tl info``; ``--json`` shows all of it)."""
    cfg, vocab = m.get("model_config") or {}, [str(v) for v in m.get("vocab") or []]
    size = m.get("input_size") or cfg.get("input_size")
    tfms = ", ".join(" ".join(str(x) for x in (t.get("name"), _dims(t.get("size")), t.get("method")) if x)
                     for t in m.get("item_tfms") or []) or "none"
    norm = m.get("normalize") or {}
    versions = ", ".join(f"{k} {v}" for k, v in sorted((m.get("versions") or {}).items(),
                                                       key=lambda kv: kv[0] != "vision_tl"))
    return "\n".join([
        f"architecture:  {cfg.get('arch')} ({cfg.get('source', 'timm')}), {cfg.get('n_out')} outputs",
        f"classes:       {len(vocab)}: {', '.join(vocab[:10])}{', ...' if len(vocab) > 10 else ''}",
        f"input size:    {_dims(size) or 'any'} px (item transforms: {tfms})",
        "normalization: " + (f"mean {_stats(norm['mean'])}, std {_stats(norm['std'])}" if norm else "none"),
        f"size on disk:  {n_bytes / 2**20:.1f} MiB",
        f"versions:      {versions}",
    ])


def read_manifest(fname: str | Path) -> dict[str, Any]:
    """The checked manifest of a ``.vtl`` file, reading only its header (no tensors)."""
    path = Path(fname)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {str(path)!r}")
    if path.is_dir():
        raise ExportFormatError(path, "it is a directory, expected a .vtl file")
    if not path.is_file():  # a named pipe would block the read below forever
        raise ExportFormatError(path, "not a regular file (a named pipe or a device), expected a .vtl file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if f.read(1) != b"{" and len(head) == 8:  # safetensors: JSON right after an 8-byte length (may start 0x80)
            _sniff_foreign(path, head)
        f.seek(8)
        if len(head) < 8:
            raise ExportFormatError(path, f"file is empty or truncated ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise ExportFormatError(path, "not a safetensors/.vtl file (no valid header)")
        if 8 + n > size:
            raise ExportFormatError(path, f"file is truncated ({size} bytes, header alone needs {8 + n})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ExportFormatError(path, f"the file header is corrupt ({e})") from None
    if not isinstance(header, dict):
        raise ExportFormatError(path, "the file header is corrupt (not a JSON object)")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    if ends and 8 + n + max(ends) > size:
        raise ExportFormatError(path, f"file is truncated ({size} bytes, expected {8 + n + max(ends)})")
    meta = header.get("__metadata__") or {}
    if MANIFEST_KEY not in meta:
        raise ExportFormatError(
            path, "a safetensors file without a vision_tl manifest (weights only, e.g. a learn.save "
            "checkpoint): load it with learn.load, or export a learner with learn.export"
        )
    text = meta[MANIFEST_KEY]
    if hashlib.sha256(text.encode()).hexdigest() != meta.get(MANIFEST_SHA_KEY):
        raise ExportFormatError(path, "the manifest does not match its checksum (the file was edited or corrupted)")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExportFormatError(path, f"the manifest is not valid JSON ({e})") from None
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, m: Any) -> None:
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise ExportFormatError(path, f"manifest format is {got!r}, expected {FORMAT_NAME!r}")
    version = m.get("format_version")
    written_by = (m.get("versions") or {}).get("vision_tl", "unknown")
    from .. import __version__

    if not isinstance(version, int) or not MIN_FORMAT_VERSION <= version <= FORMAT_VERSION:
        hint = "upgrade vision_tl" if isinstance(version, int) and version > FORMAT_VERSION else (
            f"load it with vision_tl {written_by} and export it again")
        raise ExportFormatError(
            path, f"it was written by vision_tl {written_by} in format version {version!r}; this is "
            f"vision_tl {__version__}, which reads format versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION}: {hint}"
        )
    expected = {"model_config": dict, "vocab": list, "item_tfms": list, "weights_sha256": str}
    for key, typ in expected.items():
        if not isinstance(m.get(key), typ):
            raise ExportFormatError(path, f"manifest field {key!r} should be a {typ.__name__}, got {m.get(key)!r}")
    regression = m.get("activation") == "none"  # a RegressionBlock's model: numbers out, no classes
    if (not m["vocab"] and not regression) or not all(isinstance(v, str) for v in m["vocab"]):
        raise ExportFormatError(path, f"manifest vocab must be a non-empty list of strings, got {m['vocab']!r}")
    multi, thresh = m.get("multi_label", False), m.get("threshold")
    if not isinstance(multi, bool) or (multi and not (isinstance(thresh, (int, float)) and 0 < thresh < 1)):
        raise ExportFormatError(path, f"manifest multi_label must be a bool with a threshold in (0, 1), got "
                                f"multi_label={multi!r}, threshold={thresh!r}")
    norm = m.get("normalize")
    if norm is not None and not (isinstance(norm, dict) and {"mean", "std"} <= set(norm)):
        raise ExportFormatError(path, f"manifest normalize must be null or {{mean, std}}, got {norm!r}")
    act = m.get("activation", "sigmoid" if multi else "softmax")
    if act not in ACTIVATIONS or (act == "sigmoid") != multi:
        raise ExportFormatError(path, f"manifest activation must be one of {ACTIVATIONS}, 'sigmoid' exactly for a "
                                f"multi-label model; got {act!r} with multi_label={multi!r}")


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
    saved, here = m.get("versions") or {}, _versions()
    note = "" if saved.get("timm") == here["timm"] else (
        f"; exported with timm {saved.get('timm')}, this is timm {here['timm']}")
    raise ExportFormatError(
        path, f"the weights do not match the model in the manifest (arch {cfg.get('arch')!r}, "
        f"n_out {cfg.get('n_out')}): {'; '.join(parts)}{note}"
    )


def load_learner(fname: str | Path, device: str | torch.device | None = None, cpu: bool | None = None,
                 backend: str | None = None, num_threads: int | None = None) -> Predictor:
    """Load a ``.vtl`` export as a ``Predictor`` (``.predict``, ``.predict_batch``, ``.top_k``).

    The model is rebuilt from the manifest with ``pretrained=False`` (no download, no training
    data) and the weights are loaded strictly. ``device=None`` picks CUDA when available;
    ``cpu=True`` (fastai's spelling) means ``device="cpu"``. ``backend`` runs the forward pass in
    ``"torch"`` or ``"onnxruntime"`` (CPU only; the graph is built once and cached next to the file);
    ``"auto"`` picks onnxruntime on the CPU when it is installed and the model exports cleanly, torch
    otherwise. ``backend=None`` means ``$VISION_TL_BACKEND``, else ``"auto"``. ``num_threads`` (default
    ``torch.get_num_threads()``): see ``inference/backends.py``.

    Raises:
        FileNotFoundError: ``fname`` does not exist.
        ExportFormatError: anything else wrong with the file (truncated, edited, foreign format,
            weights that do not fit the manifest, a format version this vision_tl cannot read).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    backend = backend or os.environ.get("VISION_TL_BACKEND") or "auto"
    check_backend(backend, num_threads)
    path = Path(fname)
    m = read_manifest(path)
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ExportFormatError(path, f"the weights cannot be read ({e})") from None
    if weights_sha256(sd) != m["weights_sha256"]:
        raise ExportFormatError(path, "the weights do not match their checksum (the file was edited or corrupted)")
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
            f"{_versions()['timm']}): {e}"
        ) from None
    _check_weights(path, model, sd, m)
    model.load_state_dict(sd, strict=True)
    model.eval()
    if cpu and device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"load_learner: cpu=True contradicts device={device!r}")
    if device is None:
        device = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    multi = m.get("multi_label", False)
    pred = Predictor.from_spec(model, m["vocab"], spec, device=device, model_config=cfg, channels_last=True,
                               multi_label=multi, thresh=m["threshold"] if multi else 0.5)
    return with_backend(pred, path, backend, num_threads)
