"""Split BatchNorm: statistics over groups of consecutive rows equal BatchNorm run on each group
(values, gradients, running statistics); outside ``split_batch_norm`` it is plain BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastlab.nn import (
    SplitBatchNorm1d,
    SplitBatchNorm2d,
    convert_split_batch_norm,
    split_batch_norm,
)
from contrastlab.nn.mirror import PairedBatchNorm2d

CASES = [
    (nn.BatchNorm2d, SplitBatchNorm2d, (12, 5, 4, 3), torch.contiguous_format),
    (nn.BatchNorm2d, SplitBatchNorm2d, (12, 5, 4, 3), torch.channels_last),
    (nn.BatchNorm1d, SplitBatchNorm1d, (12, 5), torch.contiguous_format),
    (nn.BatchNorm1d, SplitBatchNorm1d, (12, 5, 7), torch.contiguous_format),
]


def _pair(plain: type[nn.Module], split: type[nn.Module], c: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ref = plain(c).double()
    with torch.no_grad():  # not the identity affine map, so that weight and bias matter
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    new = split(c).double()
    new.load_state_dict(ref.state_dict())
    return ref, new


@pytest.mark.parametrize(("plain", "split", "shape", "fmt"), CASES)
@pytest.mark.parametrize("group", [3, 4])
def test_groups_equal_batch_norm_on_each_group(plain, split, shape, fmt, group: int) -> None:
    ref, new = _pair(plain, split, shape[1])
    x = torch.randn(*shape, dtype=torch.float64)
    if fmt is torch.channels_last:
        x = x.contiguous(memory_format=fmt)
    grad_out = torch.randn_like(x)
    xr, xn = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = torch.cat([ref(part) for part in xr.split(group)])
    (expected * grad_out).sum().backward()
    with split_batch_norm(new, group):
        got = new(xn)
    (got * grad_out).sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(xn.grad, xr.grad)
    torch.testing.assert_close(new.weight.grad, ref.weight.grad)
    torch.testing.assert_close(new.bias.grad, ref.bias.grad)
    # running statistics: one update towards the groups' average (not one per group)
    dims = [0, *range(2, x.dim())]
    parts = x.split(group)
    mean = torch.stack([p.mean(dims) for p in parts]).mean(0)
    var = torch.stack([p.var(dims, correction=1) for p in parts]).mean(0)
    torch.testing.assert_close(new.running_mean, 0.9 * torch.zeros_like(mean) + 0.1 * mean)
    torch.testing.assert_close(new.running_var, 0.9 * torch.ones_like(var) + 0.1 * var)
    assert int(new.num_batches_tracked) == 1


@pytest.mark.parametrize(("plain", "split", "shape", "fmt"), CASES[:3])
def test_without_a_group_size_or_in_eval_it_is_plain_batch_norm(plain, split, shape, fmt) -> None:
    ref, new = _pair(plain, split, shape[1])
    x = torch.randn(*shape, dtype=torch.float64).contiguous(memory_format=fmt)
    torch.testing.assert_close(new(x), ref(x))  # training, no group size: whole batch
    torch.testing.assert_close(new.running_var, ref.running_var)
    ref.eval(), new.eval()
    with split_batch_norm(new, 3):
        torch.testing.assert_close(new(x), ref(x))  # eval: running statistics


def test_cumulative_average_when_momentum_is_none() -> None:
    """PreciseBN sets momentum None: each batch then weighs 1 / batches seen."""
    new = SplitBatchNorm1d(4, momentum=None).double()
    a, b = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    with split_batch_norm(new, 8):  # one group: the whole batch
        new(a), new(b)
    torch.testing.assert_close(new.running_mean, (a.mean(0) + b.mean(0)) / 2)


def test_a_batch_that_is_not_a_multiple_of_the_group_is_refused() -> None:
    new = SplitBatchNorm2d(3)
    with split_batch_norm(new, 4), pytest.raises(ValueError, match="multiple of the group size 4"):
        new(torch.randn(10, 3, 2, 2))


def test_conversion_keeps_state_and_the_context_restores_group_sizes() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(4 * 9))
    net(torch.randn(6, 1, 5, 5))  # move the running statistics off their initial values
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = convert_split_batch_norm(net)
    assert out is net
    assert isinstance(net[1], SplitBatchNorm2d) and isinstance(net[3], SplitBatchNorm1d)
    after = net.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    with split_batch_norm(net, 2):
        assert net[1].group_size == net[3].group_size == 2
    assert net[1].group_size is None and net[3].group_size is None


def test_batch_norm_with_its_own_forward_is_refused() -> None:
    with pytest.raises(ValueError, match="PairedBatchNorm2d cannot take statistics"):
        convert_split_batch_norm(nn.Sequential(PairedBatchNorm2d(4)))


def test_without_running_statistics_groups_still_normalise_separately() -> None:
    ref = nn.BatchNorm2d(3, track_running_stats=False).double()
    new = SplitBatchNorm2d(3, track_running_stats=False).double()
    x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    with split_batch_norm(new, 4):
        torch.testing.assert_close(new(x), torch.cat([ref(p) for p in x.split(4)]))


def test_conversion_keeps_the_tensors_their_dtype_and_frozen_parameters() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).double()
    net[1].weight.requires_grad_(False)  # a frozen BN scale stays frozen
    weight, running = net[1].weight, net[1].running_mean
    opt = torch.optim.SGD([net[1].bias], lr=0.1)
    convert_split_batch_norm(net)
    assert net[1].weight is weight and net[1].running_mean is running
    assert net[1].weight.dtype == torch.float64 and not net[1].weight.requires_grad
    with split_batch_norm(net, 2):
        net(torch.randn(4, 1, 3, 3, dtype=torch.float64)).sum().backward()
    assert opt.param_groups[0]["params"][0] is net[1].bias and net[1].bias.grad is not None
