"""Heads, EMA math, BYOL momentum, feature queue."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from contrastlab.nn import (
    EMAUpdater,
    FeatureQueue,
    ProjectionHead,
    byol_momentum,
    byol_predictor,
    byol_projector,
    copy_frozen,
    ema_update,
    moco_v2_head,
    simclr_head,
)


def test_projection_head_shapes() -> None:
    x = torch.randn(8, 512)
    assert simclr_head(512)(x).shape == (8, 128)
    assert moco_v2_head(512)(x).shape == (8, 128)
    proj = byol_projector(512)
    z = proj(x)
    assert z.shape == (8, 256)
    assert byol_predictor()(z).shape == (8, 256)
    assert ProjectionHead(512, 64, 32, num_layers=3, last_bn=True)(x).shape == (8, 32)
    assert ProjectionHead(512, 64, 32, num_layers=1)(x).shape == (8, 32)
    kinds = [type(m) for m in byol_projector(16, 32, 8).net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in moco_v2_head(16).net)


def test_projection_head_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        ProjectionHead(16, 8, 4)(torch.randn(2, 15))
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(16, 8, 4, num_layers=0)


@pytest.mark.parametrize("method", ["simclr", "supcon", "moco", "byol"])
def test_model_proj_layers_and_last_bn_config_keys(method: str) -> None:
    """``model.proj_layers`` / ``model.proj_last_bn`` shape every method's projection head (BYOL's
    projector, not its predictor); the defaults keep the two-layer head, with an output BN for
    BYOL only; 0 layers is an error that names the key."""
    from contrastlab.config import Config, ConfigError, apply_overrides
    from contrastlab.methods import build_method

    def linears_and_last(overrides: list[str]) -> tuple[list[tuple[int, int]], nn.Module]:
        cfg = apply_overrides(Config(), [f"method.name={method}", *overrides])
        built = build_method(cfg, in_channels=1)
        head = built.projector if method == "byol" else built.head
        dims = [(m.in_features, m.out_features) for m in head.net if isinstance(m, nn.Linear)]
        return dims, head.net[-1]

    dims, last = linears_and_last(["model.proj_hidden_dim=64", "model.proj_dim=16"])
    assert dims == [(1024, 64), (64, 16)]
    # left unset, the output BN is the method's default: on for BYOL's projector only
    assert isinstance(last, nn.BatchNorm1d if method == "byol" else nn.Linear)
    _, last = linears_and_last(["model.proj_last_bn=false"])
    assert isinstance(last, nn.Linear)
    dims, last = linears_and_last(
        [
            "model.proj_hidden_dim=64",
            "model.proj_dim=16",
            "model.proj_layers=3",
            "model.proj_last_bn=true",
        ]
    )
    assert dims == [(1024, 64), (64, 64), (64, 16)]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    if method == "byol":
        cfg = apply_overrides(Config(), ["method.name=byol", "model.proj_layers=3"])
        assert sum(isinstance(m, nn.Linear) for m in build_method(cfg, 1).predictor.net) == 2
    with pytest.raises(ConfigError, match="model.proj_layers must be >= 1"):
        build_method(apply_overrides(Config(), [f"method.name={method}", "model.proj_layers=0"]), 1)


def test_ema_update_math_and_buffers() -> None:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    target = copy_frozen(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.train()(torch.randn(5, 4))  # changes BN running stats
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update(target, online, 0.9)
    for name, p in target.named_parameters():
        expected = 0.9 * before[name] + 0.1 * dict(online.named_parameters())[name]
        torch.testing.assert_close(p, expected)
    for name, b in target.named_buffers():
        torch.testing.assert_close(b, dict(online.named_buffers())[name])
    with pytest.raises(ValueError, match="m must be"):
        ema_update(target, online, 1.5)


def test_ema_endpoints() -> None:
    online, target = nn.Linear(3, 3), nn.Linear(3, 3)
    t0 = target.weight.detach().clone()
    ema_update(target, online, 1.0)
    torch.testing.assert_close(target.weight, t0)
    ema_update(target, online, 0.0)
    torch.testing.assert_close(target.weight, online.weight)


def test_byol_momentum_schedule() -> None:
    assert byol_momentum(0, 100) == pytest.approx(0.996)
    assert byol_momentum(100, 100) == pytest.approx(1.0)
    assert byol_momentum(50, 100, base=0.99) == pytest.approx(1 - 0.01 * 0.5)
    assert byol_momentum(25, 100) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    ups = [byol_momentum(k, 10) for k in range(11)]
    assert all(a <= b for a, b in itertools.pairwise(ups))


def test_ema_updater_uses_schedule() -> None:
    ema = EMAUpdater(nn.Linear(2, 2), momentum=0.99, total_steps=10)
    assert ema.update(0) == pytest.approx(0.99)
    assert ema.update(10) == pytest.approx(1.0)
    assert EMAUpdater(nn.Linear(2, 2), momentum=0.9).update(5) == pytest.approx(0.9)


def test_queue_init_unit_vectors_and_empty() -> None:
    q = FeatureQueue(10, 4, with_labels=True)
    torch.testing.assert_close(q.features.norm(dim=1), torch.ones(10))
    feats, labels = q.valid()
    assert feats.shape == (0, 4) and labels is not None and labels.shape == (0,)
    assert (q.labels == -1).all()


def test_queue_wraparound_non_multiple() -> None:
    q = FeatureQueue(5, 2, with_labels=True)
    rows = torch.arange(16, dtype=torch.float32).view(8, 2)
    q.enqueue(rows[:3], torch.arange(3))
    assert len(q) == 3 and int(q.ptr) == 3
    feats, labels = q.valid()
    torch.testing.assert_close(feats, rows[:3])
    assert labels is not None and labels.tolist() == [0, 1, 2]
    q.enqueue(rows[3:6], torch.arange(3, 6))  # crosses the end: rows 3,4 at 3,4; row 5 at 0
    assert len(q) == 5 and int(q.ptr) == 1
    assert q.labels.tolist() == [5, 1, 2, 3, 4]
    torch.testing.assert_close(q.features[0], rows[5])
    q.enqueue(rows[:7] + 100, torch.arange(100, 107))  # bigger than K: the newest 5 survive
    assert sorted(q.labels.tolist()) == [102, 103, 104, 105, 106]
    assert int(q.ptr) == (1 + 7) % 5
    # the next write overwrites the oldest surviving entry (label 102)
    oldest_slot = int(q.ptr)
    assert int(q.labels[oldest_slot]) == 102


def test_queue_read_has_no_side_effect() -> None:
    q = FeatureQueue(6, 3)
    q.enqueue(torch.randn(2, 3))
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q.valid()
    q()
    q.eval()
    q()
    for k, v in q.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_queue_state_dict_roundtrip() -> None:
    q = FeatureQueue(7, 3, with_labels=True)
    q.enqueue(torch.randn(4, 3), torch.tensor([1, 2, 3, 4]))
    q2 = FeatureQueue(7, 3, with_labels=True)
    q2.load_state_dict(q.state_dict())
    assert len(q2) == 4 and int(q2.ptr) == 4
    assert torch.equal(q2.features, q.features) and torch.equal(q2.labels, q.labels)
    assert set(q.state_dict()) == {"features", "labels", "ptr", "filled"}


def test_queue_argument_errors() -> None:
    q = FeatureQueue(4, 3)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        q.enqueue(torch.randn(2, 4))
    with pytest.raises(ValueError, match="with_labels=False"):
        q.enqueue(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))
    ql = FeatureQueue(4, 3, with_labels=True)
    with pytest.raises(ValueError, match="required"):
        ql.enqueue(torch.randn(2, 3))
