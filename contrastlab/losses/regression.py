"""Losses without a softmax: BYOL's regression loss, alignment and uniformity (Wang & Isola)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastlab.losses._common import Reduction, check_reduction, reduce
from contrastlab.ops import check_embeddings, check_same_shape, normalize

__all__ = ["align_uniform_loss", "alignment_loss", "byol_loss", "uniformity_loss"]


def byol_loss(
    p: Tensor, z: Tensor, *, reduction: Reduction = "mean", step: int | None = None
) -> Tensor:
    """BYOL's regression loss (Grill et al. 2020): ``2 − 2·cos(p_i, z_i)`` per pair.

    ``z`` (the target network's projection) is detached here: no gradient reaches it. Symmetrise
    over the two views in the method: ``byol_loss(p1, z2) + byol_loss(p2, z1)``.

    Args:
        p: ``(N, D)`` online predictions.
        z: ``(N, D)`` target projections.
        reduction: "mean" / "sum" / "none" (``(N,)``).
        step: unused (no temperature); accepted so every loss has one calling convention.
    """
    check_reduction(reduction)
    check_embeddings(p, "p")
    check_embeddings(z, "z")
    check_same_shape(p, z, "p", "z")
    loss = 2.0 - 2.0 * (normalize(p) * normalize(z.detach())).sum(dim=1)
    return reduce(loss, torch.ones_like(loss, dtype=torch.bool), reduction)


def _check_positive_float(value: float, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return float(value)


def alignment_loss(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """Alignment (Wang & Isola 2020): ``E_pos ‖ẑ1_i − ẑ2_i‖^α`` over positive pairs.

    Args:
        z1, z2: ``(N, D)`` positive pairs (L2-normalised here).
        alpha: exponent α > 0 (2 in the paper).
    """
    check_embeddings(z1, "z1")
    check_embeddings(z2, "z2")
    check_same_shape(z1, z2, "z1", "z2")
    a = _check_positive_float(alpha, "alpha")
    d2 = (normalize(z1) - normalize(z2)).square().sum(dim=1)
    # (d²)^(α/2) with a floor inside so the gradient at coincident pairs stays finite for α < 2.
    return d2.clamp(min=1e-12).pow(a / 2.0).mean() if a != 2.0 else d2.mean()


def uniformity_loss(z: Tensor, t: float = 2.0) -> Tensor:
    """Uniformity (Wang & Isola 2020): ``log E_{i<j} exp(−t‖ẑ_i − ẑ_j‖²)`` over distinct pairs.

    For unit vectors ``‖ẑ_i − ẑ_j‖² = 2 − 2 s_ij``. Differentiable; builds the ``N × N``
    similarity of the batch (use :func:`contrastlab.metrics.uniformity` for large N).

    Args:
        z: ``(N, D)`` embeddings, N ≥ 2 (L2-normalised here).
        t: t > 0 (2 in the paper).
    """
    check_embeddings(z, "z", min_rows=2)
    t_v = _check_positive_float(t, "t")
    zn = normalize(z)
    n = zn.shape[0]
    iu = torch.triu_indices(n, n, offset=1, device=z.device)
    sim = (zn @ zn.T)[iu[0], iu[1]]
    expo = (-t_v * (2.0 - 2.0 * sim)).to(torch.promote_types(sim.dtype, torch.float32))
    return torch.logsumexp(expo, dim=0) - math.log(expo.numel())


def align_uniform_loss(
    z1: Tensor,
    z2: Tensor,
    *,
    align_weight: float = 1.0,
    unif_weight: float = 1.0,
    alpha: float = 2.0,
    t: float = 2.0,
    step: int | None = None,
) -> Tensor:
    """Wang & Isola's training loss: ``w_a·L_align + w_u·(L_unif(z1) + L_unif(z2))/2``.

    Args:
        z1, z2: ``(N, D)`` positive pairs, N ≥ 2.
        align_weight, unif_weight: the weights (the paper's best ImageNet-100 setting is 3 and 1
            with t = 3).
        alpha, t: as in :func:`alignment_loss` and :func:`uniformity_loss`.
        step: unused (no temperature); accepted so every loss has one calling convention.
    """
    align = alignment_loss(z1, z2, alpha)
    unif = (uniformity_loss(z1, t) + uniformity_loss(z2, t)) / 2.0
    return align_weight * align + unif_weight * unif
