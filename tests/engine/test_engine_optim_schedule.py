"""param_groups, LARS trust ratio, optimizer builder, warmup-cosine schedule."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from contrastlab.engine.optim import LARS, build_optimizer, param_groups
from contrastlab.engine.schedule import build_scheduler, warmup_cosine


def test_param_groups_exclude_bias_and_norm() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 5, 5))
    groups = param_groups(model, weight_decay=0.1)
    decay, excl = groups
    assert decay["weight_decay"] == 0.1 and not decay["lars_exclude"]
    assert excl["weight_decay"] == 0.0 and excl["lars_exclude"]
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(excl["params"]) == 4  # conv bias, bn weight/bias, linear bias
    assert len(param_groups(model, 0.1, exclude_bias_and_norm=False)) == 1


def test_lars_trust_ratio_hand_example() -> None:
    # w = (3, 4): ‖w‖ = 5; g = (0, 1), wd = 0.5 → g + wd·w = (1.5, 3), norm √11.25.
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    w.grad = torch.tensor([0.0, 1.0])
    opt = LARS([w], lr=0.1, momentum=0.0, weight_decay=0.5, trust_coefficient=0.01, eps=0.0)
    opt.step()
    d = torch.tensor([1.5, 3.0])
    trust = 0.01 * 5.0 / math.sqrt(11.25)
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * trust * d)


def test_lars_excluded_group_is_plain_sgd_and_momentum() -> None:
    b = nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = LARS([{"params": [b], "lars_exclude": True, "weight_decay": 0.0}], lr=0.5, momentum=0.9)
    for _ in range(2):
        b.grad = torch.tensor([1.0, 2.0])
        opt.step()
    # v1 = g, v2 = 0.9 g + g = 1.9 g; total step = lr (1 + 1.9) g
    torch.testing.assert_close(
        b.detach(), torch.tensor([1.0, -1.0]) - 0.5 * 2.9 * torch.tensor([1.0, 2.0])
    )


def test_lars_zero_weight_uses_unit_trust() -> None:
    w = nn.Parameter(torch.zeros(3))
    w.grad = torch.ones(3)
    LARS([w], lr=1.0, momentum=0.0).step()
    torch.testing.assert_close(w.detach(), -torch.ones(3))


@pytest.mark.parametrize("name", ["sgd", "lars", "adamw"])
def test_build_optimizer(name: str) -> None:
    model = nn.Linear(3, 2)
    opt = build_optimizer(name, param_groups(model, 1e-4), lr=0.1, weight_decay=1e-4)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert opt.param_groups[1]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="adamw, lars, sgd"):
        build_optimizer("rmsprop", model.parameters(), lr=0.1, weight_decay=0.0)


def test_warmup_cosine_endpoints() -> None:
    assert warmup_cosine(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 1.0, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10, 1.0, 0.01) == pytest.approx(0.01)
    assert warmup_cosine(150, 100, 10, 1.0, 0.01) == pytest.approx(0.01)
    assert warmup_cosine(0, 10, 0, 2.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(0, 10, 11, 1.0)


def test_scheduler_state_roundtrip_weights_only() -> None:
    def make() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.3)
        return opt, build_scheduler(opt, total_steps=20, warmup_steps=5, final_ratio=0.1)

    opt, sched = make()
    for _ in range(7):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2, sched2 = make()
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 7
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] == pytest.approx(warmup_cosine(8, 20, 5, 0.3, 0.03))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_optimizer_matches_the_per_tensor_one(name: str) -> None:
    torch.manual_seed(0)
    # (no BN right after a biased linear layer: that bias gets a ~0 gradient, which Adam's
    # normalised step would turn into rounding noise)
    fused_model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.LayerNorm(7), nn.Linear(7, 3))
    plain_model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.LayerNorm(7), nn.Linear(7, 3))
    plain_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(name, param_groups(fused_model, 1e-2), lr=0.05, weight_decay=1e-2)
    assert fused.defaults["fused"] is True
    groups = param_groups(plain_model, 1e-2)
    plain = (
        torch.optim.SGD(groups, lr=0.05, momentum=0.9, weight_decay=1e-2)
        if name == "sgd"
        else torch.optim.AdamW(groups, lr=0.05, weight_decay=1e-2)
    )
    x = torch.randn(16, 5)
    for _ in range(5):
        for model, opt in ((fused_model, fused), (plain_model, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # parameters on a device without fused kernels fall back to the per-tensor optimiser
    meta = nn.Linear(3, 2, device="meta")
    assert not build_optimizer(name, meta.parameters(), lr=0.1, weight_decay=0.0).defaults["fused"]
