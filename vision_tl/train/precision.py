"""Which low precision a device runs fast, so that ``learn.to_fp16()`` never makes training slower.

On CUDA, float16 (and bfloat16 where supported) autocast is the point of ``to_fp16``. On a CPU,
PyTorch's float16/bfloat16 convolutions are fast only with matrix units made for them (Intel AMX:
``amx_bf16``/``amx_fp16`` in ``/proc/cpuinfo``); without them one resnet50 step takes ~27x longer
than in float32 (issue 21, an AVX-512 CPU that even lists ``avx512_bf16``). So a notebook written for a
GPU (``vision_learner(...).to_fp16()``) warns once and trains in float32 on such a laptop.
"""

from __future__ import annotations

import functools
import platform
import warnings

import torch

__all__ = ["cpu_flags", "fast_autocast_dtype", "resolve_amp_dtype"]

_warned: set[str] = set()  # one warning per process and kind (a notebook re-runs the cell often)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel lists (``/proc/cpuinfo``; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def fast_autocast_dtype(device: torch.device, wanted: torch.dtype) -> torch.dtype | None:
    """The autocast dtype that is fast on ``device`` for a request of ``wanted``, or None (float32 is fastest).

    CUDA and MPS: ``wanted``, as before. CPU: float16 with AMX-FP16, bfloat16 with AMX-BF16 (x86) or the
    ``bf16`` feature (aarch64), else None.
    """
    if device.type in ("cuda", "mps"):
        return wanted
    if device.type != "cpu":
        return None
    flags = cpu_flags()
    has_bf16 = "amx_bf16" in flags or (platform.machine().lower() in ("aarch64", "arm64") and "bf16" in flags)
    if wanted == torch.float16 and "amx_fp16" in flags:
        return torch.float16
    return torch.bfloat16 if has_bf16 else None


def resolve_amp_dtype(device: torch.device, wanted: torch.dtype, force: bool = False) -> torch.dtype | None:
    """What ``to_fp16``/``to_bf16`` should autocast to: ``wanted`` when forced, else the fast dtype (or
    None for float32, with a one-time warning saying why and how to force it)."""
    if force:
        return wanted
    dtype = fast_autocast_dtype(device, wanted)
    name = "to_fp16()" if wanted == torch.float16 else "to_bf16()"
    if dtype is None and name not in _warned:
        _warned.add(name)
        warnings.warn(f"{name}: this {device.type.upper()} has no fast float16/bfloat16 arithmetic (no AMX), where "
                      f"mixed precision makes training many times slower; training in float32 instead "
                      f"(learn.{name[:-2]}(force=True) autocasts anyway)", stacklevel=3)
    return dtype
