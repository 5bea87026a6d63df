"""Representation metrics: alignment, uniformity, tolerance, effective rank.

All are small functions of embeddings (and labels), computed without gradient and without an
``N × N`` tensor in memory, so they run on a whole training set (N = 60,000).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastlab.ops import (
    check_embeddings,
    check_labels,
    check_same_shape,
    normalize,
    pairwise_logsumexp_offdiag,
)

__all__ = ["alignment", "effective_rank", "tolerance", "uniformity"]


@torch.no_grad()
def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> float:
    """Alignment (Wang & Isola 2020): ``E ‖ẑ1_i − ẑ2_i‖^α`` over positive pairs (lower is better).

    Args:
        z1, z2: ``(N, D)`` embeddings of positive pairs (L2-normalised here).
        alpha: exponent (2).
    """
    check_embeddings(z1, "z1")
    check_embeddings(z2, "z2")
    check_same_shape(z1, z2, "z1", "z2")
    d = (normalize(z1.double()) - normalize(z2.double())).norm(dim=1)
    return float(d.pow(alpha).mean())


@torch.no_grad()
def uniformity(z: Tensor, t: float = 2.0) -> float:
    """Uniformity as reported by Wang & Liu (2021): ``−L_unif = −log E_{i≠j} exp(−t‖ẑ_i − ẑ_j‖²)``.

    Higher means more uniform (4 = 2t for orthonormal points, 0 for a collapsed set). Computed in
    row blocks: with unit vectors, ``‖ẑ_i − ẑ_j‖² = 2 − 2 s_ij``.

    Args:
        z: ``(N, D)`` embeddings, N ≥ 2.
        t: t > 0 (2 in both papers).
    """
    check_embeddings(z, "z", min_rows=2)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"t must be a finite number > 0, got {t}")
    n = z.shape[0]
    zn = normalize(z.float())
    lse = pairwise_logsumexp_offdiag(zn, scale=2.0 * t, offset=-2.0 * t)
    return -(lse - math.log(n * (n - 1)))


@torch.no_grad()
def tolerance(z: Tensor, labels: Tensor) -> float:
    """Tolerance (Wang & Liu 2021): mean cosine similarity over same-class pairs ``i ≠ j``.

    Pooled over all same-class pairs. Closed form per class,
    ``Σ_{i≠j∈c} s_ij = ‖Σ_{i∈c} ẑ_i‖² − Σ_{i∈c} ‖ẑ_i‖²``, so it costs O(N·D).

    Args:
        z: ``(N, D)`` embeddings.
        labels: ``(N,)`` int64 class labels (negative labels = unlabeled, ignored).

    Raises:
        ValueError: no class has two samples.
    """
    check_embeddings(z, "z")
    labels = check_labels(labels, z.shape[0], allow_negative=True).to(z.device)
    keep = labels >= 0
    zn, lab = normalize(z[keep].double()), labels[keep]
    if lab.numel() == 0:
        raise ValueError("tolerance needs labelled samples; every label is negative (unlabeled)")
    _, lab = torch.unique(lab, return_inverse=True)  # class ids 0..C-1, however sparse the labels
    n_cls = int(lab.max()) + 1
    sums = torch.zeros(n_cls, zn.shape[1], dtype=zn.dtype, device=zn.device).index_add_(0, lab, zn)
    counts = torch.bincount(lab, minlength=n_cls).to(zn.dtype)
    sq_norms = torch.zeros(n_cls, dtype=zn.dtype, device=zn.device).index_add_(
        0, lab, zn.square().sum(1)
    )
    pair_sum = (sums.square().sum(1) - sq_norms).sum()
    n_pairs = (counts * (counts - 1)).sum()
    if float(n_pairs) == 0:
        raise ValueError("tolerance needs at least one class with two samples")
    return float(pair_sum / n_pairs)


@torch.no_grad()
def effective_rank(z: Tensor, eps: float = 1e-7) -> float:
    """Effective rank (Roy & Vetterli 2007; RankMe, Garrido et al. 2023): ``exp(H(σ/Σσ))``.

    ``σ`` are the singular values of the (uncentred) embedding matrix (O(N·D²)); values below
    ``eps`` times the largest are treated as zero. 1 for a collapsed set, D for isotropic
    embeddings, 0 for an all-zero matrix (no direction at all).

    Args:
        z: ``(N, D)`` embeddings (not normalised: the scale of each row counts).
    """
    check_embeddings(z, "z")
    sigma = torch.linalg.svdvals(z.double())
    if float(sigma.max()) == 0.0:
        return 0.0
    sigma = sigma[sigma > eps * sigma.max()]
    p = sigma / sigma.sum()
    return float(torch.exp(-(p * p.log()).sum()))
