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
from pathlib import Path
from typing import Any

import torch

from ..data.batch_tfms import _BATCH_TFMS, batch_tfm_from_dict
from ..files import sibling_temp
from .predict import Predictor, _as_normalize

FORMAT_NAME = "vision_tl.learner"
FORMAT_VERSION = 1  # bump when the manifest changes incompatibly
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
    for t in predictor.item_tfms:
        if not callable(getattr(t, "to_dict", None)):
            raise ValueError(
                f"export: item transform {t!r} cannot be saved (it has no to_dict()); the loaded model would "
                "see differently prepared images. Use vision_tl's Resize / RandomResizedCrop"
            )
    item_tfms = [t.to_dict() for t in predictor.item_tfms]
    size = predictor.item_tfms[-1].size if predictor.item_tfms else cfg.input_size
    mean, std = predictor.normalize if predictor.normalize is not None else (None, None)
    batch_tfms = []
    for t in predictor.batch_tfms:
        if type(t).__name__ not in _BATCH_TFMS:
            warnings.warn(f"export: batch transform {t!r} is not a vision_tl transform and is not saved; "
                          "the loaded model predicts without it", stacklevel=3)
            continue
        batch_tfms.append(t.to_dict())
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        # the size the model was trained for, not its architecture's default (one input size in the manifest)
        "model_config": {**cfg.to_dict(), "input_size": None if size is None else list(size)},
        "vocab": list(predictor.vocab),
        "item_tfms": item_tfms,
        "batch_tfms": batch_tfms,
        "normalize": None if mean is None else {"mean": list(mean), "std": list(std)},
        "input_size": None if size is None else list(size),
        "versions": _versions(),
    }


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
    return export_predictor(Predictor.from_learner(learn), path)


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
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        _sniff_foreign(path, head)
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
    if not m["vocab"] or not all(isinstance(v, str) for v in m["vocab"]):
        raise ExportFormatError(path, f"manifest vocab must be a non-empty list of strings, got {m['vocab']!r}")
    norm = m.get("normalize")
    if norm is not None and not (isinstance(norm, dict) and {"mean", "std"} <= set(norm)):
        raise ExportFormatError(path, f"manifest normalize must be null or {{mean, std}}, got {norm!r}")


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


def load_learner(fname: str | Path, device: str | torch.device | None = None, cpu: bool | None = None) -> Predictor:
    """Load a ``.vtl`` export as a ``Predictor`` (``.predict``, ``.predict_batch``, ``.top_k``).

    The model is rebuilt from the manifest with ``pretrained=False`` (no download, no training
    data) and the weights are loaded strictly. ``device=None`` picks CUDA when available;
    ``cpu=True`` (fastai's spelling) means ``device="cpu"``.

    Raises:
        FileNotFoundError: ``fname`` does not exist.
        ExportFormatError: anything else wrong with the file (truncated, edited, foreign format,
            weights that do not fit the manifest, a format version this vision_tl cannot read).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..data.item_tfms import item_tfm_from_dict
    from ..models.build import ModelConfig, build_model

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
        item_tfms = [item_tfm_from_dict(d) for d in m["item_tfms"]]
        batch_tfms = [batch_tfm_from_dict(d) for d in m.get("batch_tfms") or []]
        norm = m.get("normalize")
        normalize = None if norm is None else _as_normalize((norm["mean"], norm["std"]))
    except (ValueError, TypeError, KeyError) as e:
        raise ExportFormatError(path, f"the manifest is invalid: {e}") from None
    if cfg.n_out != len(m["vocab"]):
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
    return Predictor(model, m["vocab"], item_tfms, normalize, device=device, model_config=cfg, batch_tfms=batch_tfms,
                     channels_last=True)
