"""The ``.vtl`` file format: write, read and check one exported model (no pickle, nothing executed).

A ``.vtl`` file is a safetensors file. Its tensors are the model's state dict, plus any *payloads*
(below); the header's ``__metadata__`` holds a JSON manifest and the SHA-256 of that JSON text. Core
manifest entries: ``format``/``format_version``, ``model_config``, ``vocab``, the preprocessing spec
(``item_tfms``, ``batch_tfms``, ``normalize``, ``input_size``, ``activation``), ``multi_label``/
``threshold``, ``versions`` and ``weights_sha256`` (a hash of the state dict alone, independent of the
file's layout). Reading parses JSON and raw tensors only; every way a file can be wrong raises an
``ExportFormatError`` naming it.

Extending the format (what other parts of vision_tl store with a model):

- **Manifest entries**: any other top-level key with a JSON value, e.g. ``"card"`` (how the model was
  made), ``"train_items"`` (hashes of the training files' names), ``"int8"`` (the int8 graph's
  calibration and measured accuracy drop). Pass them in the manifest to ``write_vtl`` (``export.py``'s
  ``learner_entries`` collects them at export, one line per entry), or add them to an existing file
  with ``update_vtl(path, entries={...})``. Readers ignore keys they do not know, so a new entry needs
  no format version. A key of ``CORE_KEYS`` cannot be set this way.
- **Payloads**: named blobs of bytes (e.g. ``"onnx_int8"``, a quantized ONNX graph), stored as uint8
  tensors named ``PAYLOAD_PREFIX + name`` and listed in the manifest's ``"payloads"`` entry with their
  size and SHA-256. ``write_vtl(..., payloads={name: data})`` or ``update_vtl(path, payloads=...)``
  writes them, ``read_payload(path, name)`` reads one back checked (None when the file has none), and
  ``read_vtl`` keeps them out of the state dict. A file with payloads is format version 3, so an older
  vision_tl (which would count them as weights) says "upgrade" instead of "corrupted".

Writes are atomic (temporary sibling, fsync, ``os.replace``) and reproducible (same input, same bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..files import sibling_temp
from ..models.preprocess import ACTIVATIONS
from .quantize import describe_int8

__all__ = ["CORE_KEYS", "ExportFormatError", "VtlFile", "describe_manifest", "library_versions", "read_manifest", "read_payload",
           "read_vtl", "update_vtl", "weights_sha256", "write_vtl"]

FORMAT_NAME = "vision_tl.learner"
FORMAT_VERSION = 3  # bump when the manifest changes incompatibly (2: multi-label models; 3: payloads)
MIN_FORMAT_VERSION = 1  # the oldest format this version still reads
PAYLOAD_VERSION = 3  # the format version of a file that carries payloads
MANIFEST_KEY = "vision_tl.manifest"
MANIFEST_SHA_KEY = "vision_tl.manifest_sha256"
PAYLOAD_PREFIX = "__vision_tl_payload__."
_MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not one of ours
CORE_KEYS = frozenset({
    "format", "format_version", "model_config", "vocab", "item_tfms", "batch_tfms", "normalize", "input_size",
    "activation", "multi_label", "threshold", "versions", "weights_sha256", "payloads",
})


class ExportFormatError(ValueError):
    """A file that is not a usable vision_tl export; ``.path`` names it, the message says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot load {str(self.path)!r}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def library_versions() -> dict[str, str]:
    """The versions a file records and a loader compares: vision_tl, torch, timm."""
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


def _payload_entries(payloads: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    for name, data in payloads.items():
        if not isinstance(name, str) or not name or not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"a payload is a non-empty name and bytes, got {name!r}: {type(data).__name__}")
    return {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in payloads.items()}


def write_vtl(fname: str | Path, tensors: Mapping[str, torch.Tensor], manifest: dict[str, Any],
              payloads: Mapping[str, bytes] | None = None, replace_quietly: bool = False) -> Path:
    """Write ``tensors`` (a state dict) + ``manifest`` (+ named ``payloads``) atomically to ``fname``.

    The weights hash and the payload list are added to the manifest. The file is written next to its
    destination under a temporary name and moved into place with ``os.replace``: a crash mid-write
    leaves any earlier file intact. An existing file of the same name is replaced (like fastai's
    ``export``), with a warning naming it unless ``replace_quietly``. Same input, same bytes.
    """
    from safetensors.torch import save

    path = Path(fname)
    if path.is_dir():
        raise ValueError(f"export destination {str(path)!r} is a directory, expected a file name")
    if path.exists() and not replace_quietly:
        warnings.warn(f"export: replacing the existing file {str(path)!r}", stacklevel=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    clash = sorted(k for k in tensors if k.startswith(PAYLOAD_PREFIX))
    if clash:
        raise ValueError(f"state dict keys may not start with {PAYLOAD_PREFIX!r}, got {clash[:3]}")
    manifest = {k: v for k, v in manifest.items() if k != "payloads"}
    manifest["weights_sha256"] = weights_sha256(tensors)
    if payloads:
        manifest["payloads"] = _payload_entries(payloads)
        manifest["format_version"] = max(int(manifest.get("format_version", 1)), PAYLOAD_VERSION)
        tensors.update({PAYLOAD_PREFIX + name: torch.frombuffer(bytearray(data), dtype=torch.uint8)
                        for name, data in payloads.items()})
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


@dataclass
class VtlFile:
    """A ``.vtl`` file read whole and checked: its manifest, state dict, payloads and the SHA-256 of its bytes."""

    path: Path
    manifest: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    payloads: dict[str, bytes] = field(default_factory=dict)
    sha256: str = ""


def read_vtl(fname: str | Path) -> VtlFile:
    """Read a ``.vtl`` file once (its bytes are hashed and parsed from memory) and check everything in it:
    manifest checksum and fields, weights checksum, payload sizes and checksums."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(fname)
    m = read_manifest(path)
    data = path.read_bytes()
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise ExportFormatError(path, f"the weights cannot be read ({e})") from None
    raw = {k[len(PAYLOAD_PREFIX):]: tensors.pop(k) for k in [k for k in tensors if k.startswith(PAYLOAD_PREFIX)]}
    if weights_sha256(tensors) != m["weights_sha256"]:
        raise ExportFormatError(path, "the weights do not match their checksum (the file was edited or corrupted)")
    listed = m.get("payloads") or {}
    if set(raw) != set(listed):
        raise ExportFormatError(path, f"payloads {sorted(raw)} do not match the manifest's list {sorted(listed)}")
    payloads = {name: _checked_payload(path, name, t, listed[name]) for name, t in raw.items()}
    return VtlFile(path, m, tensors, payloads, hashlib.sha256(data).hexdigest())


def _checked_payload(path: Path, name: str, t: torch.Tensor, entry: Any) -> bytes:
    data = t.numpy().tobytes()
    if not isinstance(entry, dict) or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ExportFormatError(path, f"payload {name!r} does not match its checksum (the file was edited or corrupted)")
    return data


def read_payload(fname: str | Path, name: str) -> bytes | None:
    """The payload ``name`` of a ``.vtl`` file, checked against the manifest; None when the file has none."""
    from safetensors import safe_open

    path = Path(fname)
    entry = (read_manifest(path).get("payloads") or {}).get(name)
    if entry is None:
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            t = f.get_tensor(PAYLOAD_PREFIX + name)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own types for a damaged file
        raise ExportFormatError(path, f"payload {name!r} cannot be read ({e})") from None
    return _checked_payload(path, name, t, entry)


def update_vtl(fname: str | Path, entries: Mapping[str, Any] | None = None,
               payloads: Mapping[str, bytes] | None = None) -> Path:
    """Add or replace manifest ``entries`` and ``payloads`` of an existing ``.vtl`` file, atomically.

    The weights are copied as they are (checked first); a failure leaves the file untouched.
    """
    entries = dict(entries or {})
    core = sorted(set(entries) & CORE_KEYS)
    if core:
        raise ValueError(f"update_vtl adds entries, it cannot change the core manifest keys {core}")
    vtl = read_vtl(fname)
    manifest = {**vtl.manifest, **entries}
    return write_vtl(vtl.path, vtl.state_dict, manifest, {**vtl.payloads, **(payloads or {})}, replace_quietly=True)


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
        describe_int8(m),
    ] + _extension_lines(m))


def _extension_lines(m: dict[str, Any]) -> list[str]:
    """What other parts of vision_tl stored in the file: extra manifest entries and payloads."""
    extra = sorted(k for k in m if k not in CORE_KEYS)
    payloads = m.get("payloads") or {}
    lines = [f"entries:       {', '.join(extra)}"] if extra else []
    if payloads:
        lines.append("payloads:      " + ", ".join(f"{k} ({v.get('bytes', 0) / 2**20:.1f} MiB)"
                                                   for k, v in sorted(payloads.items())))
    return lines


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


