"""Where a timm model's pretrained weights can come from, found without waiting on a dead network.

Offline, ``timm.create_model(pretrained=True)`` sits through the Hugging Face hub's retries (about
50 s) before failing. ``find_pretrained`` looks in the local caches first and probes the weights'
host with one short TCP connection (skipped behind an HTTP(S) proxy, which only the hub client
knows how to use), so ``vision_learner`` and the demo can answer at once.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

__all__ = ["find_pretrained", "find_torchvision_pretrained", "host_reachable"]

_OFF = ("1", "true", "yes", "on")


def host_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to ``host``? True behind a proxy (we cannot tell), False when
    ``HF_HUB_OFFLINE`` is set."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in _OFF:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def find_pretrained(arch: str) -> tuple[bool, Path | None, str]:
    """``(available, cached_file, why)`` for the timm model ``arch``'s pretrained weights.

    A cached file (Hugging Face or torch hub cache) is returned directly; otherwise the weights count
    as available when their host answers; otherwise ``(False, None, why)``.
    """
    import timm
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch) if timm.is_model(arch) else None
    if cfg is None:
        return False, None, f"timm knows no pretrained weights for {arch!r}"
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo = cfg.hf_hub_id.split("@")[0]
        for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, fname)
            if isinstance(hit, str):
                return True, Path(hit), f"cached weights {hit}"
    if cfg.url:
        import torch.hub

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlparse(cfg.url).path).name
        if cached.is_file():
            return True, cached, f"cached weights {cached}"
    host = "huggingface.co" if cfg.hf_hub_id else urllib.parse.urlparse(cfg.url or "").hostname
    if host and host_reachable(host):
        return True, None, f"downloading weights from {host}"
    return False, None, "no network and no cached copy of the pretrained weights"


def find_torchvision_pretrained(name: str) -> tuple[bool, Path | None, str]:
    """``(available, cached_file, why)`` for torchvision model ``name``'s default pretrained weights.

    The torch hub cache (``$TORCH_HOME/hub/checkpoints``) is where torchvision's own loader looks
    first; otherwise the weights count as available when their host answers.
    """
    import torch.hub
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        return False, None, f"torchvision knows no pretrained weights for {name!r}"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlparse(url).path).name
    if cached.is_file():
        return True, cached, f"cached weights {cached}"
    host = urllib.parse.urlparse(url).hostname
    if host and host_reachable(host):
        return True, None, f"downloading weights from {host}"
    return False, None, f"no network and no cached copy of the pretrained weights ({cached})"
