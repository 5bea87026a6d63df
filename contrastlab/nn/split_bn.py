"""BatchNorm with statistics over sub-batches, to emulate on one device what BatchNorm does on G.

On G devices each device's BatchNorm normalises its own B/G images. MoCo's shuffle BN (He et al.
2020, §3.3) relies on that: the keys are computed on a shuffled split of the batch, so a query
and its positive key are normalised with different statistics. :class:`SplitBatchNorm1d` and
:class:`SplitBatchNorm2d` are ``BatchNorm1d`` / ``BatchNorm2d`` (same parameters, buffers and
state-dict keys) that, while :func:`split_batch_norm` sets a group size, take their training
statistics over consecutive groups of that many rows in one pass instead of over the whole
batch. Outside that context, and in eval mode, they are plain BatchNorm layers, so PreciseBN and
evaluation see whole-batch statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SplitBatchNorm1d", "SplitBatchNorm2d", "convert_split_batch_norm", "split_batch_norm"]


def _grouped_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, group_size: int) -> Tensor:
    """Training-mode BatchNorm of ``x`` (N, C, ...) over groups of ``group_size`` consecutive
    rows; the running statistics move once towards the groups' average mean and (unbiased)
    variance. Each group is a contiguous slice normalised by PyTorch's own kernel: statistics
    written with autograd ops instead took 26% longer per MoCo step."""
    n = x.shape[0]
    if n % group_size != 0:
        raise ValueError(f"the batch ({n} rows) must be a multiple of the group size {group_size}")
    rm, rv = bn.running_mean, bn.running_var
    if not bn.track_running_stats or rm is None or rv is None:
        return torch.cat(
            [
                F.batch_norm(p, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
                for p in x.split(group_size)
            ]
        )
    outs, means, variances = [], [], []
    for part in x.split(group_size):
        # with momentum 1 these buffers receive the group's mean and unbiased variance
        mean, var = torch.zeros_like(rm), torch.ones_like(rv)
        outs.append(F.batch_norm(part, mean, var, bn.weight, bn.bias, True, 1.0, bn.eps))
        means.append(mean)
        variances.append(var)
    assert bn.num_batches_tracked is not None
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        rm.lerp_(torch.stack(means).mean(0), m)
        rv.lerp_(torch.stack(variances).mean(0), m)
    return torch.cat(outs)


class _SplitBatchNorm(nn.modules.batchnorm._BatchNorm):
    """The forward both split layers share; ``_check_input_dim`` comes from the 1d / 2d base."""

    group_size: int | None = None

    def forward(self, input: Tensor) -> Tensor:
        s = self.group_size
        if s is None or not self.training or s >= input.shape[0]:
            return super().forward(input)
        self._check_input_dim(input)
        return _grouped_batch_norm(self, input, s)


class SplitBatchNorm1d(_SplitBatchNorm, nn.BatchNorm1d):
    """``BatchNorm1d`` (N, C) or (N, C, L) whose training statistics are taken over groups of
    ``group_size`` consecutive rows while :func:`split_batch_norm` sets it (None: whole batch)."""


class SplitBatchNorm2d(_SplitBatchNorm, nn.BatchNorm2d):
    """``BatchNorm2d`` (N, C, H, W) whose training statistics are taken over groups of
    ``group_size`` consecutive rows while :func:`split_batch_norm` sets it (None: whole batch)."""


_SPLIT = {nn.BatchNorm1d: SplitBatchNorm1d, nn.BatchNorm2d: SplitBatchNorm2d}


def convert_split_batch_norm(module: nn.Module) -> nn.Module:
    """Turn, in place, every plain ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` in ``module`` into its
    split counterpart; returns ``module``. The layers keep their very parameter and buffer
    tensors (so an optimiser or hook holding them stays valid), their dtype, device and
    ``requires_grad``: only their class changes.

    Raises:
        ValueError: if ``module`` holds another kind of BatchNorm (a subclass with its own
            forward, e.g. the mirror encoder's paired BN, or SyncBatchNorm), which could not
            take statistics over sub-batches.
    """

    def convert(m: nn.Module) -> nn.Module:
        kind = type(m)
        if kind in _SPLIT:  # the subclasses add behaviour only, no state
            m.__class__ = _SPLIT[kind]
            return m
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and kind not in _SPLIT.values():
            raise ValueError(
                f"{kind.__name__} cannot take statistics over sub-batches; only plain "
                "BatchNorm1d / BatchNorm2d layers can"
            )
        for name, child in m.named_children():
            setattr(m, name, convert(child))
        return m

    return convert(module)


@contextmanager
def split_batch_norm(module: nn.Module, group_size: int | None) -> Iterator[None]:
    """Within the block, the split BatchNorm layers of ``module`` take their training
    statistics over groups of ``group_size`` consecutive rows (None: the whole batch)."""
    layers = [m for m in module.modules() if isinstance(m, _SplitBatchNorm)]
    before = [m.group_size for m in layers]
    for m in layers:
        m.group_size = group_size
    try:
        yield
    finally:
        for m, s in zip(layers, before, strict=True):
            m.group_size = s
