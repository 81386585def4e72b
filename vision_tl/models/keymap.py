"""Renaming a weights file's keys to a model's: the user's map, or an explicit pairing by order.

A checkpoint made by another library names its tensors its own way (EfficientNet-PyTorch's
``_blocks.0._depthwise_conv.weight`` is timm's ``blocks.0.0.conv_dw.weight``). Nothing here guesses
on its own: a map is applied only when the user passes one, and the pairing by order only when asked
for by name (``weights_map="by_order"``), with a report of what was paired.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["WeightsMap", "KeyMapping", "apply_weights_map", "map_weights_by_order", "parse_weights_map"]

BY_ORDER = "by_order"
# a dict of regex -> replacement (applied in order to every key), a function key -> new key (None drops
# the tensor), or "by_order"
WeightsMap = Mapping[str, str] | Callable[[str], str | None] | str


class KeyMapping(dict):
    """``{file key: model key}`` built by :func:`map_weights_by_order`, with ``unused`` file keys and a
    one-paragraph :meth:`report` of what was paired."""

    def __init__(self, pairs: dict[str, str], unused: list[str], source: str):
        super().__init__(pairs)
        self.unused, self.source = unused, source

    def report(self) -> str:
        first, last = next(iter(self.items())), list(self.items())[-1]
        text = (f"{self.source}: {len(self)} tensors paired by order and shape "
                f"(first {first[0]!r} -> {first[1]!r}, last {last[0]!r} -> {last[1]!r})")
        if self.unused:
            text += f"; {len(self.unused)} file tensors not used: {self.unused[:4]}"
        return text


def _is_counter(key: str) -> bool:
    """BatchNorm's step counter: not a weight, absent from many files, never part of a pairing."""
    return key.endswith("num_batches_tracked")


def map_weights_by_order(
    weights: Mapping[str, torch.Tensor], target: nn.Module | Mapping[str, torch.Tensor], source: str = "weights",
) -> KeyMapping:
    """Pair the file's tensors with ``target``'s one-to-one, in order, checking every shape.

    BatchNorm ``num_batches_tracked`` counters are left out on both sides; extra tensors at the end of
    the file (a classifier the body does not have) are reported as unused. Any shape mismatch, or a file
    with fewer tensors than the target, is a :class:`ValueError` naming the first pair that differs.
    """
    tsd = target.state_dict() if isinstance(target, nn.Module) else target
    tkeys = [k for k in tsd if not _is_counter(k)]
    fkeys = [k for k in weights if not _is_counter(k)]
    if len(fkeys) < len(tkeys):
        raise ValueError(f"{source} has {len(fkeys)} tensors, the model needs {len(tkeys)}: "
                         "they cannot be paired one-to-one by order")
    for i, (fk, tk) in enumerate(zip(fkeys, tkeys)):
        if tuple(weights[fk].shape) != tuple(tsd[tk].shape):
            raise ValueError(
                f"{source}: tensor {i} {fk!r} {tuple(weights[fk].shape)} does not match the model's {tk!r} "
                f"{tuple(tsd[tk].shape)}: the two do not line up by order; pass an explicit weights_map")
    return KeyMapping(dict(zip(fkeys, tkeys)), fkeys[len(tkeys):], source)


def apply_weights_map(
    weights: Mapping[str, torch.Tensor], weights_map: WeightsMap | None,
    target: nn.Module | Mapping[str, torch.Tensor] | None = None, source: str = "weights",
) -> dict[str, torch.Tensor]:
    """``weights`` with its keys renamed by ``weights_map`` (see :data:`WeightsMap`); unchanged for None.

    ``"by_order"`` pairs the tensors with ``target``'s (see :func:`map_weights_by_order`) and warns with
    the report, so the pairing is never silent.
    """
    if weights_map is None:
        return dict(weights)
    if isinstance(weights_map, str):
        if weights_map != BY_ORDER:
            raise ValueError(f"weights_map={weights_map!r}: pass a dict of patterns, a function or {BY_ORDER!r}")
        if target is None:
            raise ValueError(f"weights_map={BY_ORDER!r} needs the model to pair with")
        mapping = map_weights_by_order(weights, target, source)
        warnings.warn(mapping.report(), stacklevel=3)
        rename: Callable[[str], str | None] = mapping.get
    elif isinstance(weights_map, Mapping):
        try:
            rules = [(re.compile(p), r) for p, r in weights_map.items()]
        except re.error as e:
            raise ValueError(f"weights_map: bad pattern {e.pattern!r}: {e}") from None

        def rename(key: str) -> str | None:
            for pat, rep in rules:
                key = pat.sub(rep, key)
            return key or None
    elif callable(weights_map):
        rename = weights_map
    else:
        raise TypeError(f"weights_map must be a dict, a function or {BY_ORDER!r}, got {type(weights_map).__name__}")
    out: dict[str, torch.Tensor] = {}
    for k, v in weights.items():
        new = rename(k)
        if new is None:
            continue
        if new in out:
            raise ValueError(f"weights_map sends two tensors of {source} to {new!r} (one of them {k!r})")
        out[new] = v
    return out


def parse_weights_map(text: str) -> WeightsMap:
    """The CLI's ``--weights-map``: ``by_order`` (or ``by-order``), a JSON file of ``{pattern: replacement}``,
    or ``PATTERN=REPLACEMENT`` pairs separated by commas (``'^_blocks\\.=blocks.,^_fc\\.='``)."""
    import json

    if text.replace("-", "_") == BY_ORDER:
        return BY_ORDER
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        try:
            value: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"--weights-map {text!r}: cannot read a JSON map from it ({e})") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError(f"--weights-map {text!r}: the JSON must be an object of pattern -> replacement")
        return value
    pairs = [p for p in text.split(",") if p]
    if not pairs or any("=" not in p for p in pairs):
        raise ValueError(f"--weights-map {text!r}: expected by_order, a .json file, or PATTERN=REPLACEMENT pairs")
    return dict(p.split("=", 1) for p in pairs)
