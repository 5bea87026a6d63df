"""PreciseBN (Wu & Johnson 2021): BN running statistics recomputed as an equal-weight average of
batch statistics, checked against the statistics computed directly from the inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastlab.nn import recompute_bn_stats


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
        nn.BatchNorm1d(3),
    ).double()


def test_running_stats_are_the_average_of_batch_statistics() -> None:
    net = _net().train()
    net[1].momentum = 0.3
    batches = [torch.randn(6, 2, 5, 5, dtype=torch.float64) * 2 + 1 for _ in range(3)]
    assert recompute_bn_stats(net, batches) == 18
    # first BN: its input depends on no other BN, so the oracle is the conv output itself
    conv = [net[0](x) for x in batches]
    mean = torch.stack([c.mean(dim=(0, 2, 3)) for c in conv]).mean(0)
    var = torch.stack([c.transpose(0, 1).reshape(4, -1).var(dim=1) for c in conv]).mean(0)
    torch.testing.assert_close(net[1].running_mean, mean)
    torch.testing.assert_close(net[1].running_var, var)
    # second BN: dropout was off (eval mode), BN 1 normalised each batch with its own statistics
    feats = []
    for x in batches:
        c = net[0](x)
        mu, sd = (
            c.mean(dim=(0, 2, 3), keepdim=True),
            c.var(dim=(0, 2, 3), unbiased=False, keepdim=True),
        )
        h = torch.relu(
            (c - mu) / torch.sqrt(sd + net[1].eps) * net[1].weight[:, None, None]
            + net[1].bias[:, None, None]
        )
        feats.append(net[5](h.flatten(1)))
    torch.testing.assert_close(net[6].running_mean, torch.stack([f.mean(0) for f in feats]).mean(0))
    torch.testing.assert_close(net[6].running_var, torch.stack([f.var(0) for f in feats]).mean(0))
    # modes and momenta restored
    assert all(m.training for m in net.modules()) and net[1].momentum == 0.3
    net.eval()
    recompute_bn_stats(net, batches[:1])
    assert not any(m.training for m in net.modules())


def test_bad_batches_leave_the_statistics_unchanged() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="empty"):
        recompute_bn_stats(net, [])
    with pytest.raises(ValueError, match=">= 2 samples"):
        recompute_bn_stats(
            net,
            [
                torch.randn(4, 2, 5, 5, dtype=torch.float64),
                torch.randn(1, 2, 5, 5, dtype=torch.float64),
            ],
        )
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert net[1].momentum == 0.1
    assert recompute_bn_stats(nn.Linear(3, 3), [torch.randn(4, 3)]) == 0
