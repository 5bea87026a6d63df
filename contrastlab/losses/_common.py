"""Shared pieces of the loss functions: temperature resolution, reductions, pair set-up."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from contrastlab.ops import TauFn, check_embeddings, check_same_shape, normalize
from contrastlab.temperature import TemperatureLike, as_policy

Reduction = Literal["mean", "sum", "none"]

__all__ = [
    "PairSetup",
    "Reduction",
    "check_reduction",
    "pair_setup",
    "reduce",
    "resolve_top_k",
    "tau_fn",
]


def check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def tau_fn(temperature: TemperatureLike, step: int | None) -> TauFn:
    """Bind a temperature (float or policy) and the step into the kernel's ``tau_fn``."""
    policy = as_policy(temperature)

    def fn(sim: Tensor, positive: Tensor) -> Tensor:
        tau: Tensor = policy(sim, step=step, positive=positive)
        return tau

    return fn


def reduce(loss: Tensor, has_pos: Tensor, reduction: Reduction) -> Tensor:
    """Reduce per-anchor losses: "mean" over anchors that have a positive, "sum", or "none"."""
    check_reduction(reduction)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / has_pos.sum().clamp(min=1).to(loss.dtype)


@dataclass(frozen=True)
class PairSetup:
    """Two views ``z1, z2`` arranged as NT-Xent's 2N anchors.

    Attributes:
        anchors: ``(2N, D)`` unit rows ``[ẑ1; ẑ2]``.
        contrast: ``(2N + K, D)`` anchors followed by the ``K`` external negatives.
        anchor_ids: ``(2N,)`` sample index of each anchor (``i mod N``).
        contrast_ids: ``(2N + K,)`` sample ids, −1 for external negatives.
        self_index: ``(2N,)`` each anchor's own column.
        positive_index: ``(2N,)`` the column of each anchor's positive.
        n_negatives: negatives per anchor, ``2N − 2 + K``.
    """

    anchors: Tensor
    contrast: Tensor
    anchor_ids: Tensor
    contrast_ids: Tensor
    self_index: Tensor
    positive_index: Tensor
    n_negatives: int


def pair_setup(z1: Tensor, z2: Tensor, negatives: Tensor | None) -> PairSetup:
    """Validate two views (and optional negatives) and build the NT-Xent index structure."""
    check_embeddings(z1, "z1", min_rows=2)
    check_embeddings(z2, "z2", min_rows=2)
    check_same_shape(z1, z2, "z1", "z2")
    n = z1.shape[0]
    device = z1.device
    anchors = normalize(torch.cat([z1, z2], dim=0))
    ids = torch.arange(n, device=device).repeat(2)
    contrast, contrast_ids = anchors, ids
    k = 0
    if negatives is not None:
        check_embeddings(negatives, "negatives")
        if negatives.shape[1] != z1.shape[1]:
            raise ValueError(
                f"negatives must have shape (K, {z1.shape[1]}) to match z1's D; "
                f"got {tuple(negatives.shape)}"
            )
        k = negatives.shape[0]
        contrast = torch.cat([anchors, normalize(negatives).to(anchors.dtype)], dim=0)
        contrast_ids = torch.cat([ids, torch.full((k,), -1, device=device, dtype=ids.dtype)])
    idx = torch.arange(2 * n, device=device)
    return PairSetup(
        anchors=anchors,
        contrast=contrast,
        anchor_ids=ids,
        contrast_ids=contrast_ids,
        self_index=idx,
        positive_index=(idx + n) % (2 * n),
        n_negatives=2 * n - 2 + k,
    )


def resolve_top_k(
    top_k: int | None, alpha: float | None, n_negatives: int, *, required: bool
) -> int | None:
    """Validate ``top_k`` / ``alpha`` (exactly one when ``required``) and return the count."""
    if top_k is not None and alpha is not None:
        raise ValueError("give either top_k or alpha, not both")
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be a fraction in (0, 1], got {alpha!r}")
        # ceil of the exact product: 0.07 · 100 is 7.000000000000001 in floating point, not 8
        return max(1, math.ceil(round(alpha * n_negatives, 9)))
    if top_k is None:
        if required:
            raise ValueError(
                "give top_k (number of hardest negatives) or alpha (a fraction in (0, 1])"
            )
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    if not 1 <= top_k <= n_negatives:
        raise ValueError(
            f"top_k must be in [1, {n_negatives}] (the number of negatives per anchor), got {top_k}"
        )
    return top_k
