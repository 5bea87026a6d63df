"""Distributed helpers that also work in a single process without ``torch.distributed``.

``gather_with_grad`` is the all-gather for cross-rank negatives in SimCLR/SupCon, for the
multi-process training that a later issue brings (the trainer runs one process today): forward
concatenates every rank's (B, D) block into (W·B, D); backward sums the incoming gradients over
ranks (all-reduce) and returns this rank's slice, so the gradient equals that of the same loss
computed on the concatenated batch in one process (each rank's loss being the mean over its own
anchors, averaged over ranks by DDP).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "is_dist",
    "is_main_process",
    "per_rank_indices",
]


def is_dist() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """Number of processes, 1 when not distributed."""
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return get_rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.batch = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather (B, …) from every rank into (W·B, …), keeping gradients for the local block.

    Every rank must pass the same shape. Returns ``x`` unchanged when not distributed.

    Note: with ``loss_r`` the loss on rank r, the returned gradient for this rank's block is
    Σ_r ∂loss_r/∂x; DDP then averages parameter gradients over ranks, which matches one process
    minimising mean_r loss_r.
    """
    if not is_dist() or get_world_size() == 1:
        return x
    out: Tensor = _GatherWithGrad.apply(x)
    return out


def per_rank_indices(
    n: int, rank: int, world_size: int, epoch: int, seed: int = 0, shuffle: bool = True
) -> Tensor:
    """This rank's sample indices for ``epoch``: a disjoint slice of a seeded permutation.

    The permutation of range(n) depends only on (seed, epoch), so every rank computes the same one;
    rank r takes positions r, r + W, r + 2W, … of its first ⌊n / W⌋·W entries (the remainder is
    dropped so all ranks get the same count, as needed for equal-sized batches).

    Returns:
        int64 (⌊n / world_size⌋,).

    Raises:
        ValueError: if n < 0, world_size < 1 or rank not in [0, world_size).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    per = n // world_size
    return order[: per * world_size][rank::world_size].clone()
