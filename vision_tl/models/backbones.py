"""Bodies for transfer learning: a backbone with its classifier cut off, and its input statistics.

``create_body`` accepts a timm model name, a torchvision builder (``torchvision.models.resnet18``)
or an ``nn.Module`` that is already a body. Pretrained weights come from timm/torchvision's own
loaders (hub caches) or from a local file, always loaded without unpickling code.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .keymap import WeightsMap, apply_weights_map

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# prefixes a saved state dict may carry in front of the body's own parameter names
_PREFIXES = ("", "module.", "model.", "0.model.", "0.", "body.", "backbone.", "module.0.model.")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for but could not be loaded (offline, no cache, bad file)."""


class TimmBody(nn.Module):
    """A timm model created with ``num_classes=0, global_pool=''``; always returns NCHW features.

    Token models (ViT: ``(B, N, C)``) are mean-pooled to ``(B, C, 1, 1)``; NHWC models (Swin)
    are permuted, so every head sees the same layout.
    """

    def __init__(self, model: nn.Module, out_format: str = "NCHW") -> None:
        super().__init__()
        self.model = model
        self.out_format = out_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model(x)
        if self.out_format == "NHWC":
            return x.permute(0, 3, 1, 2)
        if self.out_format == "NLC":
            return x.mean(1)[:, :, None, None]
        if self.out_format == "NC":
            return x[:, :, None, None]
        return x

    def _stages(self) -> list[nn.Module]:
        """The timm model's top-level children up to the last one with parameters (the classifier
        and pooling left by ``num_classes=0`` are dropped): ``body[-1]`` is the last stage, like fastai's."""
        children = list(self.model.children())
        last = max((i for i, c in enumerate(children) if any(True for _ in c.parameters())), default=-1)
        return children[: last + 1]

    def __getitem__(self, i: int | slice) -> nn.Module | list[nn.Module]:
        return self._stages()[i]

    def __len__(self) -> int:
        return len(self._stages())


def load_weights_file(fname: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``).

    Checkpoints that wrap the weights (``{"model": sd}``, ``{"state_dict": sd}``) are unwrapped.
    """
    path = Path(fname)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {str(path)!r}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle errors, truncated files, ...
            raise PretrainedWeightsError(
                f"could not read weights file {str(path)!r} safely (weights_only=True): {_why_unreadable(path, e)}"
            ) from e
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PretrainedWeightsError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return dict(sd)


def _why_unreadable(path: Path, err: Exception) -> str:
    """One line on why ``torch.load`` refused ``path`` (torch's own messages run to a page, or say ``'101'``)."""
    text = str(err).strip()
    with open(path, "rb") as f:
        head = f.read(1)
    if not zipfile.is_zipfile(path) and head != b"\x80":  # torch.save writes a zip (or, long ago, a pickle)
        return "not a .safetensors file or a torch.save state dict"
    if "Weights only load failed" in text:
        return ("it holds Python objects that only unpickling could rebuild (refused: a weights file must "
                "hold plain tensors; save model.state_dict(), or use .safetensors)")
    return f"{type(err).__name__}: {text.splitlines()[0] if text else 'unreadable (truncated?)'}"


def load_into(module: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Load ``sd`` into ``module``, finding the key prefix that matches (``model.``, ``0.``, ...).

    Keys the module does not have (an old classifier) are ignored; missing keys or shape
    mismatches raise ``PretrainedWeightsError`` naming ``source`` and a few offending keys. BatchNorm's
    ``num_batches_tracked`` counters may be absent (many files leave them out; PyTorch's own loading
    accepts that): the module keeps its own.
    """
    target = module.state_dict()
    best: dict[str, torch.Tensor] = {}
    for prefix in _PREFIXES:
        cand = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if len(set(cand) & set(target)) > len(set(best) & set(target)):
            best = cand
    for k in target:
        if k not in best and k.endswith("num_batches_tracked"):
            best[k] = target[k]
    missing = [k for k in target if k not in best]
    if missing:
        raise PretrainedWeightsError(
            f"{source} does not fit this body: {len(missing)} of {len(target)} tensors missing, "
            f"e.g. {missing[:3]}; the file has e.g. {list(sd)[:3]}"
        )
    bad = [k for k in target if best[k].shape != target[k].shape]
    if bad:
        k = bad[0]
        raise PretrainedWeightsError(
            f"{source}: shape mismatch for {k!r}: file {tuple(best[k].shape)} vs model {tuple(target[k].shape)}"
        )
    module.load_state_dict({k: best[k] for k in target}, strict=True)


def _offline_error(arch: str, why: str) -> PretrainedWeightsError:
    err = PretrainedWeightsError(
        f"could not load pretrained weights for {arch!r} ({why}). Without network access and no cached "
        "copy, pass a local file with weights='path/to/file.safetensors' (or a .pth/.pt state dict; on the "
        "command line --weights FILE), or pretrained=False (--no-pretrained)."
    )
    err.why = why  # the command line words its own advice with its flags
    return err


def _probe_format(model: nn.Module, input_size: tuple[int, int], nf: int) -> str:
    """Run one tiny forward pass to learn the feature layout the model returns."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *input_size))
    model.train(was_training)
    if out.ndim == 2:
        return "NC"
    if out.ndim == 3:
        return "NLC"
    if out.ndim == 4 and out.shape[1] != nf and out.shape[-1] == nf:
        return "NHWC"
    return "NCHW"


def _load_file_into(module: nn.Module, weights: str | Path, weights_map: WeightsMap | None,
                    rename: Callable[[dict], dict] | None = None) -> None:
    """Read ``weights``, rename its keys (the user's ``weights_map``, then ``rename``) and load it."""
    source = f"weights file {str(weights)!r}"
    try:
        sd = apply_weights_map(load_weights_file(weights), weights_map, target=module, source=source)
    except ValueError as e:
        raise PretrainedWeightsError(str(e)) from None
    load_into(module, rename(sd) if rename else sd, source=source)


def _timm_body(arch: str, pretrained: bool, weights: str | Path | None,
               weights_map: WeightsMap | None = None) -> tuple[nn.Module, int, dict]:
    import timm

    if not timm.is_model(arch):
        from .names import check_arch_name

        check_arch_name(arch)  # "did you mean ...?"
        raise ValueError(f"arch={arch!r} is not a timm model name (see timm.list_models())")
    use_hub = pretrained and weights is None
    kwargs: dict[str, Any] = {}
    if use_hub:  # answer at once offline instead of after the hub's retries
        from .hub import find_pretrained

        available, cached, why = find_pretrained(arch)
        if not available:
            raise _offline_error(arch, why)
        if cached is not None:  # timm's own loading (its key filters), from the cache, no network
            kwargs["pretrained_cfg_overlay"] = {"file": str(cached)}
    try:
        model = timm.create_model(arch, pretrained=use_hub, num_classes=0, global_pool="", **kwargs)
    except (OSError, RuntimeError, ValueError) as e:
        if use_hub:
            raise _offline_error(arch, f"{type(e).__name__}: {e}") from e
        raise
    if weights is not None:
        _load_file_into(model, weights, weights_map)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    nf = int(model.num_features)
    in_size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
    fmt = _probe_format(model, in_size if cfg.get("fixed_input_size") else (64, 64), nf)
    stats = {
        "mean": tuple(cfg.get("mean", IMAGENET_MEAN)),
        "std": tuple(cfg.get("std", IMAGENET_STD)),
        "input_size": in_size,
    }
    return TimmBody(model, fmt), nf, stats


def _cut_torchvision(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Cut a torchvision classifier before its global pooling layer (fastai's rule).

    Returns the body (an ``nn.Sequential``) and the model's names of its children, in order.
    """
    children = list(model.named_children())
    pools = [i for i, (_, m) in enumerate(children) if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if pools:
        kept = children[: pools[-1]]
        return nn.Sequential(*[m for _, m in kept]), [n for n, _ in kept]
    if hasattr(model, "features"):
        return nn.Sequential(model.features, nn.ReLU()), ["features"]
    raise ValueError(f"cannot find where to cut torchvision model {type(model).__name__}; pass an nn.Module body")


def _as_body_keys(sd: Mapping[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """Rename a full torchvision state dict's body keys (``layer1.0.conv1.weight``, maybe after a
    ``module.``-style prefix) to the cut body's (``4.0.conv1.weight``); other keys pass unchanged,
    so a file that already has body keys (a ``learn.save`` file, a body-only state dict) loads too.
    """
    index = {n: str(i) for i, n in enumerate(names)}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        new = k
        for prefix in _PREFIXES:
            head, _, rest = k[len(prefix):].partition(".")
            if k.startswith(prefix) and rest and head in index:
                new = f"{prefix}{index[head]}.{rest}"
                break
        out.setdefault(new, v)
    return out


def _torchvision_body(
    builder: Callable[..., nn.Module], pretrained: bool, weights: str | Path | None,
    weights_map: WeightsMap | None = None,
) -> tuple[nn.Module, int, dict]:
    import torchvision

    name = getattr(builder, "__name__", str(builder))
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    use_hub = pretrained and weights is None
    if use_hub:  # answer at once offline instead of after urllib's timeout
        from .hub import find_torchvision_pretrained

        available, _, why = find_torchvision_pretrained(name)
        if not available:
            raise _offline_error(name, why)
    try:
        model = builder(weights="DEFAULT" if use_hub else None)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        if use_hub:
            raise _offline_error(name, f"{type(e).__name__}: {e}") from e
        raise
    if use_hub:
        tfm = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        mean, std = tuple(tfm.mean), tuple(tfm.std)
    body, names = _cut_torchvision(model)
    if weights is not None:  # into the body only: the file's classifier (any size, or none) is not needed
        _load_file_into(body, weights, weights_map, rename=lambda sd: _as_body_keys(sd, names))
    nf = _num_features(body)
    return body, nf, {"mean": tuple(mean), "std": tuple(std), "input_size": (224, 224)}


def _num_features(body: nn.Module, size: tuple[int, int] = (64, 64)) -> int:
    was_training = body.training
    body.eval()
    with torch.no_grad():
        out = body(torch.zeros(1, 3, *size))
    body.train(was_training)
    if out.ndim != 4:
        raise ValueError(f"a body must return NCHW features; {type(body).__name__} returned shape {tuple(out.shape)}")
    return int(out.shape[1])


def create_body(
    arch: str | Callable[..., nn.Module] | nn.Module,
    pretrained: bool = True,
    weights: str | Path | None = None,
    weights_map: WeightsMap | None = None,
) -> tuple[nn.Module, int, dict]:
    """Return ``(body, n_features, stats)`` for ``arch``.

    Args:
        arch: a timm model name (``"resnet34"``), a torchvision builder (``vision_tl.resnet34`` is
            torchvision's), a timm architecture symbol (``xresnet50``), or an ``nn.Module`` body.
        pretrained: load the hub's pretrained weights (timm/torchvision caches; network if needed).
        weights: a local ``.safetensors``/``.pth`` state dict; overrides the hub. Works offline.
        weights_map: how to rename the file's keys to the body's: ``{regex: replacement}`` applied in
            order, a function ``key -> new key`` (None drops the tensor), or ``"by_order"`` to pair the
            tensors one-to-one in order and shape (reported in a warning). See ``models/keymap.py``.
    Returns:
        the body (NCHW features), the feature channel count, and ``{"mean", "std", "input_size"}``
        from the backbone's pretrained config (ImageNet stats where none is known).
    """
    if weights_map is not None and weights is None:
        raise ValueError("weights_map renames the keys of a weights file: pass weights=FILE with it")
    if isinstance(arch, str):
        return _timm_body(arch, pretrained, weights, weights_map)
    if isinstance(getattr(arch, "timm_name", None), str):  # an architecture symbol such as xresnet50
        return _timm_body(arch.timm_name, pretrained, weights, weights_map)
    if isinstance(arch, nn.Module):
        if weights is not None:
            _load_file_into(arch, weights, weights_map)
        stats = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": None}
        return arch, _num_features(arch), stats
    if callable(arch):
        return _torchvision_body(arch, pretrained, weights, weights_map)
    raise ValueError(f"arch must be a timm name, a torchvision builder or an nn.Module, got {arch!r}")
