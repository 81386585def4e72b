"""Odd images: tiny, extreme aspect ratio, nearly blank, or greyscale in a set of colour images."""

from __future__ import annotations

from collections.abc import Sequence

from .scan import FileScan

__all__ = ["odd_images"]


def odd_images(scans: Sequence[FileScan], min_side: int = 32, max_aspect: float = 4.0, blank_std: float = 2.0,
               colour_share: float = 0.8) -> list[tuple[int, str]]:
    """``(index, reason)`` for each odd readable image; greyscale counts as odd only when at least
    ``colour_share`` of the readable images are in colour."""
    ok = [s for s in scans if s.reason is None]
    colour_set = bool(ok) and sum(not s.greyscale for s in ok) >= colour_share * len(ok)
    out = []
    for i, s in enumerate(scans):
        if s.reason is not None or s.size is None:
            continue
        w, h = s.size
        why = []
        if min(w, h) < min_side:
            why.append(f"tiny ({w}x{h} px, a side under {min_side})")
        if max(w, h) > max_aspect * min(w, h):
            why.append(f"extreme aspect ratio ({w}x{h})")
        if s.grey_std < blank_std:
            why.append(f"nearly blank (grey-level spread {s.grey_std:.1f})")
        if colour_set and s.greyscale:
            why.append("greyscale in a colour set")
        if why:
            out.append((i, "; ".join(why)))
    return out
