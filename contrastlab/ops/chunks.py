"""Row-blocked helpers: pairwise reductions without an N×N tensor in memory."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["block_size_for", "pairwise_logsumexp_offdiag", "row_blocks"]


def row_blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` covering ``range(n)`` in blocks of at most ``block`` rows."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    for start in range(0, n, block):
        yield start, min(n, start + block)


def block_size_for(n_cols: int, budget_elems: int = 1 << 24) -> int:
    """Rows per block so that a ``(rows, n_cols)`` float32 tile stays within ``budget_elems``."""
    return max(1, min(max(n_cols, 1), budget_elems // max(n_cols, 1)))


@torch.no_grad()
def pairwise_logsumexp_offdiag(z: Tensor, scale: float, offset: float = 0.0) -> float:
    """``log Σ_{i≠j} exp(scale · z_i·z_j + offset)`` over ordered pairs, computed in row blocks.

    Args:
        z: ``(N, D)`` embeddings (any norm; the caller normalises if needed).
        scale: multiplier of the dot products.
        offset: constant added to every exponent.

    Returns:
        The log-sum-exp as a Python float (float64 accumulation).
    """
    n = z.shape[0]
    zf = z.float()
    # With |scale| + |offset| small the exponent cannot overflow float32 (unit rows: |z_i·z_j| ≤ 1),
    # so one exp pass per block suffices; otherwise fall back to a max-shifted log-sum-exp.
    bounded = abs(scale) + abs(offset) < 60.0 and bool((zf.norm(dim=1) <= 1.0 + 1e-5).all())
    parts: list[Tensor] = []
    for start, stop in row_blocks(n, block_size_for(n, 1 << 22)):
        s = torch.addmm(
            torch.full((1,), offset, device=z.device), zf[start:stop], zf.T, alpha=scale
        )
        idx = torch.arange(start, stop, device=z.device)
        s[idx - start, idx] = -math.inf
        if bounded:
            parts.append(s.exp_().sum(dim=1, dtype=torch.float64).log())
        else:
            parts.append(torch.logsumexp(s, dim=1).double())
    return float(torch.logsumexp(torch.cat(parts), dim=0))
