"""PyTorch hooks as context managers: ``with hook_output(learn.model[0]) as h: ...; h.stored``.

fastai's semantics (the book's CAM chapter): a forward hook stores the module's output, a
``grad=True`` hook stores the gradients of its output (the ``grad_output`` tuple); stored tensors
are detached by default; leaving the ``with`` block (or ``.remove()``) removes the hook, so a
model is never left with hooks attached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["Hook", "Hooks", "hook_output", "hook_outputs"]


def _detach(o: Any, cpu: bool) -> Any:
    if isinstance(o, torch.Tensor):
        o = o.detach()
        return o.cpu() if cpu else o
    if isinstance(o, (list, tuple)):
        return type(o)(_detach(x, cpu) for x in o)
    return o


def _output(m: nn.Module, i: Any, o: Any) -> Any:
    """What ``hook_output`` stores: the output (forward) or the ``grad_output`` tuple (backward)."""
    return o


class Hook:
    """Call ``hook_func(module, input, output)`` on every forward (or backward) pass; keep its result in ``stored``.

    Args:
        m: the module to hook.
        hook_func: computes what to store from ``(module, input, output)`` (for a backward hook,
            ``(module, grad_input, grad_output)``).
        is_forward: a forward hook (default) or a full backward hook.
        detach: detach ``input``/``output`` before ``hook_func`` sees them (no graph is kept).
        cpu: move them to the CPU too.
    """

    def __init__(self, m: nn.Module, hook_func: Callable[[nn.Module, Any, Any], Any], is_forward: bool = True,
                 detach: bool = True, cpu: bool = False) -> None:
        self.hook_func, self.detach, self.cpu, self.stored = hook_func, detach, cpu, None
        register = m.register_forward_hook if is_forward else m.register_full_backward_hook
        self.hook = register(self._hook_fn)
        self.removed = False

    def _hook_fn(self, module: nn.Module, input: Any, output: Any) -> None:
        if self.detach:
            input, output = _detach(input, self.cpu), _detach(output, self.cpu)
        self.stored = self.hook_func(module, input, output)

    def remove(self) -> None:
        """Detach the hook from its module (idempotent)."""
        if not self.removed:
            self.hook.remove()
            self.removed = True

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Hook(stored={None if self.stored is None else type(self.stored).__name__}, removed={self.removed})"


class Hooks:
    """One ``Hook`` per module; ``stored`` lists what each stored, in module order."""

    def __init__(self, ms: Iterable[nn.Module], hook_func: Callable[[nn.Module, Any, Any], Any],
                 is_forward: bool = True, detach: bool = True, cpu: bool = False) -> None:
        self.hooks = [Hook(m, hook_func, is_forward, detach, cpu) for m in ms]

    @property
    def stored(self) -> list[Any]:
        return [h.stored for h in self.hooks]

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def hook_output(module: nn.Module, detach: bool = True, cpu: bool = False, grad: bool = False) -> Hook:
    """A ``Hook`` storing ``module``'s output (or, with ``grad=True``, the gradients of its output)."""
    return Hook(module, _output, is_forward=not grad, detach=detach, cpu=cpu)


def hook_outputs(modules: Iterable[nn.Module], detach: bool = True, cpu: bool = False, grad: bool = False) -> Hooks:
    """``Hooks`` storing each module's output (or output gradients with ``grad=True``)."""
    return Hooks(modules, _output, is_forward=not grad, detach=detach, cpu=cpu)
