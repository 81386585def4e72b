"""The default optimizer: fastai's AdamW settings on torch's fused kernel, the same update as the loop."""

import copy

import pytest
import torch
from torch import nn

from vision_tl.train import optimizer


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 3))


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 5) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_the_default_optimizer_is_fused_on_the_cpu_and_updates_as_torchs_loop_does():
    fused_model = _model()
    loop_model = copy.deepcopy(fused_model)
    groups = [list(fused_model.parameters())]
    opt = optimizer.create_opt(optimizer.adamw, groups, [1e-2], wd=0.1)
    assert opt.defaults["fused"] is True and opt.defaults["betas"] == (0.9, 0.99) and opt.defaults["eps"] == 1e-5
    ref = optimizer.create_opt(lambda specs, lr: torch.optim.AdamW(specs, lr=lr, betas=(0.9, 0.99), eps=1e-5),
                               [list(loop_model.parameters())], [1e-2], wd=0.1)
    assert not ref.defaults.get("fused")
    _train(fused_model, opt)
    _train(loop_model, ref)
    start = _model()
    for p, q, p0 in zip(fused_model.parameters(), loop_model.parameters(), start.parameters()):
        assert not torch.equal(p, p0)  # it trained
        torch.testing.assert_close(p, q, rtol=0, atol=1e-4)  # each step moves a weight by ~lr = 1e-2
    # the schedule's per-group changes reach the fused kernel (it reads the groups at every step)
    optimizer.set_hypers(opt, [0.0], mom=0.9, wd=0.0)
    before = [p.detach().clone() for p in fused_model.parameters()]
    _train(fused_model, opt, steps=1)
    assert all(torch.equal(p, b) for p, b in zip(fused_model.parameters(), before))  # lr 0: nothing moves


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tensors_without_a_fused_kernel_get_torchs_default_adamw(dtype):
    p = nn.Parameter(torch.zeros(3, dtype=dtype))
    opt = optimizer.adamw([{"params": [p]}], lr=1e-3)
    assert not opt.defaults.get("fused")


def test_adamw_takes_parameters_as_a_generator_as_torch_does():
    model = _model()
    opt = optimizer.adamw(model.parameters(), lr=1e-3)
    groups = optimizer.adamw([{"params": model[0].parameters()}, {"params": model[5].parameters()}], lr=1e-3)
    n = len(list(model[0].parameters())) + len(list(model[5].parameters()))
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    assert sum(len(g["params"]) for g in groups.param_groups) == n


def test_a_checkpoint_from_an_unfused_optimizer_keeps_the_fused_kernel_and_its_state():
    """torch's load_state_dict copies ``fused`` from the saved groups; ours keeps the optimizer's own."""
    old_model = _model()
    old = torch.optim.AdamW(old_model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-5)  # before the default
    _train(old_model, old, steps=2)
    model = copy.deepcopy(old_model)
    opt = optimizer.adamw([{"params": list(model.parameters())}], lr=1e-2)
    optimizer.load_opt_state(opt, copy.deepcopy(old.state_dict()))  # as from a file: no shared tensors
    assert opt.param_groups[0]["fused"] is True
    assert all(s["step"].dtype == torch.float32 and float(s["step"]) == 2 for s in opt.state.values())
    _train(model, opt, steps=1)  # the fused kernel runs on the loaded moments
    _train(old_model, old, steps=1)
    for p, q in zip(model.parameters(), old_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-4)
