"""Parameter groups for discriminative learning rates: early body, late body, head.

For timm bodies the grouping follows the model's own ``group_matcher`` (stem, stages/blocks);
other bodies are split evenly over their children. ``layerwise_splitter`` gives one group per
timm layer group for layer-wise LR decay.
"""

from __future__ import annotations

from torch import nn

from .backbones import TimmBody

ParamGroups = list[list[nn.Parameter]]


def _timm_layer_groups(model: nn.Module, coarse: bool) -> list[list[nn.Parameter]] | None:
    """The timm model's layer groups in input-to-output order, or None if it has no group_matcher."""
    if not hasattr(model, "group_matcher"):
        return None
    from timm.models import group_parameters

    try:
        named = group_parameters(model, model.group_matcher(coarse=coarse))
    except (NotImplementedError, TypeError):
        return None
    params = dict(model.named_parameters())
    groups = [[params[n] for n in names if n in params] for _, names in sorted(named.items())]
    return [g for g in groups if g]


def _even_split(chunks: list[list[nn.Parameter]], n: int) -> ParamGroups:
    """Split ordered chunks into ``n`` consecutive groups of (nearly) equal chunk count."""
    n = min(n, len(chunks))
    bounds = [round(i * len(chunks) / n) for i in range(n + 1)]
    return [[p for c in chunks[a:b] for p in c] for a, b in zip(bounds[:-1], bounds[1:])]


def body_chunks(body: nn.Module, coarse: bool = True) -> list[list[nn.Parameter]]:
    """The body's parameters as ordered chunks (timm layer groups, else its children)."""
    inner = body.model if isinstance(body, TimmBody) else body
    groups = _timm_layer_groups(inner, coarse)
    if groups is None:
        groups = [list(c.parameters()) for c in inner.children()]
        groups = [g for g in groups if g] or [list(inner.parameters())]
    return groups


def default_splitter(model: nn.Module) -> ParamGroups:
    """``[early body, late body, head]`` for a ``Sequential(body, head)``; one group otherwise."""
    if not (isinstance(model, nn.Sequential) and len(model) == 2):
        return [list(model.parameters())]
    body, head = model[0], model[1]
    chunks = body_chunks(body, coarse=True)
    return [*_even_split(chunks, 2), list(head.parameters())]


def layerwise_splitter(model: nn.Module) -> ParamGroups:
    """One group per fine-grained body layer group (timm's ``coarse=False``) plus the head.

    Used with a ``layer_decay`` factor: group ``i`` of ``n`` gets ``lr * decay ** (n - 1 - i)``.
    """
    if not (isinstance(model, nn.Sequential) and len(model) == 2):
        return [list(model.parameters())]
    return [*body_chunks(model[0], coarse=False), list(model[1].parameters())]


def check_groups(model: nn.Module, groups: ParamGroups) -> ParamGroups:
    """Validate a splitter's output: every trainable parameter exactly once; raise naming the problem."""
    seen: dict[int, int] = {}
    for gi, g in enumerate(groups):
        for p in g:
            if id(p) in seen:
                raise ValueError(f"splitter put a parameter in groups {seen[id(p)]} and {gi}")
            seen[id(p)] = gi
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(f"splitter left out {len(missing)} parameters, e.g. {missing[:3]}")
    return [g for g in groups if g]
