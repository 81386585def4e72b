"""The one adapter between the service and the inference layer: load a ``.vtl`` file, decode, predict, explain.

Everything the server asks of a model goes through ``ServedModel``, built by ``load_model`` on the
public ``load_learner``. ``decode`` runs the exact preprocessing of ``Predictor.predict`` (so a served
probability equals ``load_learner(path).predict(same_bytes)``), ``forward`` runs one batch of decoded
images, ``cam_png`` draws Grad-CAM. When the inference layer changes its insides, this file is the
only one to follow.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ServedModel", "load_model", "file_sha256"]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of the whole file, streamed (what ``/health`` reports and ``sha256sum`` prints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ServedModel:
    """A loaded model and what ``/health`` says about it."""

    predictor: Any
    path: Path
    sha256: str
    backend: str

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.vocab)

    @property
    def multi_label(self) -> bool:
        return bool(getattr(self.predictor, "multi_label", False))

    @property
    def thresh(self) -> float:
        return float(getattr(self.predictor, "thresh", 0.5))

    def decode(self, data: bytes) -> np.ndarray:
        """Encoded image bytes -> the model's uint8 ``(H, W, 3)`` input, as ``predict`` prepares it.

        Raises ``ValueError`` (an ``ImageError``) for anything that is not a usable image.
        """
        img = self.predictor.preprocess(data)
        return img if img.flags.writeable else img.copy()

    def forward(self, images: list[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, c)`` (float32) for same-sized decoded images, in one forward pass."""
        import torch

        xb = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        return self.predictor.forward_uint8(xb).float().numpy()

    def cam_png(self, data: bytes, target: str | int | None = None, overlay: bool = False) -> bytes:
        """The Grad-CAM heatmap of ``data`` as an RGBA PNG at the size of the image the model saw.

        The alpha channel carries the heat (transparent where the model found no evidence), so the
        PNG can be laid over that image; ``overlay=True`` draws it over that image already (opaque).
        """
        from matplotlib import colormaps
        from PIL import Image

        heat = np.clip(np.asarray(self.predictor.grad_cam(data, target=target), dtype=np.float32), 0, 1)
        rgba = (colormaps["inferno"](heat) * 255).astype(np.uint8)
        rgba[..., 3] = (heat * 200).astype(np.uint8)
        img = Image.fromarray(rgba, "RGBA")
        if overlay:
            seen = Image.fromarray(self.decode(data)).convert("RGBA").resize(img.size, Image.BILINEAR)
            img = Image.alpha_composite(seen, img).convert("RGB")
        side = max(img.size)
        if side < 256:  # a 32-64 px model's map is too small to look at in the page: scale it up smoothly
            scale = 256 / side
            img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


def load_model(path: str | Path, backend: str | None = None, precision: str | None = None,
               num_threads: int | None = None) -> ServedModel:
    """Load ``path`` with ``load_learner`` (checksums verified there) and wrap it for the service.

    ``precision`` is passed on only when given (``"auto"`` means the loader's default), so this works
    with a ``load_learner`` that does not know the argument yet.
    """
    from .. import load_learner  # the public name: its module may move (issue 16)

    kwargs: dict[str, Any] = {"backend": backend, "num_threads": num_threads}
    if precision not in (None, "auto"):
        kwargs["precision"] = precision
    try:
        pred = load_learner(path, **kwargs)
    except TypeError as e:
        if "precision" in kwargs and "precision" in str(e):
            raise ValueError(f"--precision {precision}: this vision_tl's load_learner does not support "
                             "precision= yet") from None
        raise
    if getattr(pred, "activation", "softmax") == "none" or not pred.vocab:
        raise ValueError(f"{str(path)!r} is a regression model: the server serves classifiers only")
    return ServedModel(pred, Path(path), file_sha256(path), str(getattr(pred, "backend", "torch")))
