"""The service's settings, checked up front (each error echoes the value it got)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServeConfig", "BACKENDS", "PRECISIONS"]

BACKENDS = ("auto", "torch", "onnxruntime")
PRECISIONS = ("auto", "fp32", "int8")


@dataclass
class ServeConfig:
    """How to serve ``model`` (see ``vision-tl serve --help`` for each setting).

    ``api_key=None`` reads ``$VISION_TL_API_KEY``; an empty key means no authentication.
    ``precision=None`` (or ``"auto"``) leaves the choice to ``load_learner``.
    """

    model: Path
    backend: str | None = None
    precision: str | None = None
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_upload_mb: float = 20.0
    max_queue: int = 256
    timeout_s: float = 30.0
    api_key: str | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    decode_threads: int | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self.model = Path(self.model)
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("max_batch", "max_queue"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("max_upload_mb", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        for name in ("decode_threads", "num_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        if self.api_key is None:
            self.api_key = os.environ.get("VISION_TL_API_KEY") or None
        self.cors_origins = tuple(self.cors_origins)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def threads_for_decoding(self) -> int:
        return self.decode_threads or min(4, os.cpu_count() or 1)
