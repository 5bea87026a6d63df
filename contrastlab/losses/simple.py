"""Wang & Liu's simple loss and its hard-negative variant (CVPR 2021)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.losses._common import (
    PairSetup,
    Reduction,
    check_reduction,
    pair_setup,
    reduce,
    resolve_top_k,
)
from contrastlab.ops import block_size_for, row_blocks

__all__ = ["hard_simple_loss", "simple_loss"]


def _check_lam(lam: float | None, n_negatives: int) -> float:
    if lam is None:
        return 1.0 / n_negatives
    if (
        isinstance(lam, bool)
        or not isinstance(lam, (int, float))
        or not math.isfinite(lam)
        or lam < 0
    ):
        raise ValueError(f"lam must be a finite float >= 0 or None, got {lam!r}")
    return float(lam)


def _positive_sims(setup: PairSetup) -> Tensor:
    return (setup.anchors * setup.anchors[setup.positive_index]).sum(dim=1)


def simple_loss(
    z1: Tensor,
    z2: Tensor,
    lam: float | None = None,
    *,
    negatives: Tensor | None = None,
    reduction: Reduction = "mean",
    step: int | None = None,
) -> Tensor:
    """The simple contrastive loss of Wang & Liu: ``L(i) = −s_ii + λ Σ_{j≠i} s_ij``.

    Over NT-Xent's 2N anchors: ``s_ii`` is the similarity to the positive and the sum runs over
    the ``2N − 2 + K`` negatives. It is NT-Xent's τ → ∞ limit up to scale, with
    ``λ = 1/n_negatives``, which is the default (``lam=None``; the paper does not state its λ).
    Costs O(N·D): the negative sum is ``z_i·Σ_k z_k`` minus the self and positive terms.

    Args:
        z1, z2: ``(N, D)`` two views, N ≥ 2 (L2-normalised here).
        lam: weight λ ≥ 0 of the negatives, or None for ``1/n_negatives``.
        negatives: ``(K, D)`` external negatives.
        reduction: "mean" / "sum" / "none" (``(2N,)``).
        step: unused (no temperature); accepted so every loss has one calling convention.
    """
    check_reduction(reduction)
    setup = pair_setup(z1, z2, negatives)
    lam_v = _check_lam(lam, setup.n_negatives)
    a = setup.anchors
    s_pos = _positive_sims(setup)
    total = setup.contrast.sum(dim=0)
    neg_sum = a @ total - (a * a).sum(dim=1) - s_pos
    loss = -s_pos + lam_v * neg_sum
    return reduce(loss, torch.ones_like(s_pos, dtype=torch.bool), reduction)


def hard_simple_loss(
    z1: Tensor,
    z2: Tensor,
    lam: float | None = None,
    top_k: int | None = None,
    *,
    alpha: float | None = None,
    negatives: Tensor | None = None,
    reduction: Reduction = "mean",
    step: int | None = None,
) -> Tensor:
    """HardSimple (Wang & Liu): ``L(i) = −s_ii + λ Σ_{k ∈ top-K negatives of i} s_ik``.

    The negatives kept are each anchor's ``top_k`` most similar (or ``ceil(alpha·n)``); the rest
    get no gradient. Computed in row blocks, never holding the full similarity matrix.

    Args:
        z1, z2: ``(N, D)`` two views, N ≥ 2.
        lam: λ ≥ 0, or None for ``1/top_k``.
        top_k: hardest negatives per anchor, in ``[1, 2N − 2 + K]``; or
        alpha: fraction of negatives in (0, 1].
        negatives: ``(K, D)`` external negatives.
        reduction: "mean" / "sum" / "none" (``(2N,)``).
        step: unused (no temperature); accepted so every loss has one calling convention.
    """
    check_reduction(reduction)
    setup = pair_setup(z1, z2, negatives)
    k = resolve_top_k(top_k, alpha, setup.n_negatives, required=True)
    assert k is not None
    lam_v = _check_lam(lam, k)
    a, c = setup.anchors, setup.contrast
    s_pos = _positive_sims(setup)
    sums: list[Tensor] = []
    for start, stop in row_blocks(a.shape[0], block_size_for(c.shape[0])):
        with torch.no_grad():  # which negatives; nothing of this (rows, C) work is kept
            scores = a[start:stop] @ c.T
            rows = torch.arange(stop - start, device=a.device)
            scores[rows, setup.self_index[start:stop]] = -math.inf
            scores[rows, setup.positive_index[start:stop]] = -math.inf
            hardest = scores.topk(k, dim=1).indices
        # Σ_k s_ik = a_i · Σ_k c_k: the backward keeps the (rows, k) indices and (rows, D) sums.
        kept = F.embedding_bag(hardest, c, mode="sum")
        sums.append((a[start:stop] * kept).sum(dim=1))
    loss = -s_pos + lam_v * torch.cat(sums)
    return reduce(loss, torch.ones_like(s_pos, dtype=torch.bool), reduction)
