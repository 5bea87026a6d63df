"""NT-Xent (SimCLR), multi-view NT-Xent and Wang & Liu's hard contrastive loss.

All three run through :func:`contrastlab.ops.contrastive_loss`, the one masked-softmax path.
"""

from __future__ import annotations

from torch import Tensor

from contrastlab.losses._common import (
    Reduction,
    check_reduction,
    pair_setup,
    reduce,
    resolve_top_k,
    tau_fn,
)
from contrastlab.losses.supcon import supcon
from contrastlab.ops import Backend, check_embeddings, contrastive_loss
from contrastlab.temperature import TemperatureLike

__all__ = ["hard_nt_xent", "multiview_nt_xent", "nt_xent"]


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: TemperatureLike = 0.5,
    *,
    negatives: Tensor | None = None,
    reduction: Reduction = "mean",
    step: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020).

    The 2N anchors are ``[z1; z2]``; anchor ``i``'s positive is the other view of the same sample
    and its denominator runs over every other row of the 2N (and over ``negatives``, e.g. a queue
    or memory bank)::

        l_i = −log( exp(s_{i,j(i)}/τ) / Σ_{k≠i} exp(s_ik/τ) ),  s = cosine similarity.

    The mean runs over all 2N anchors (as the PyTorch ports do; the reference TF code sums the two
    directional means, i.e. twice this value). Inputs are L2-normalised here.

    Args:
        z1: ``(N, D)`` embeddings of the first view, N ≥ 2.
        z2: ``(N, D)`` embeddings of the second view.
        temperature: a float τ > 0 or a :class:`~contrastlab.temperature.TemperaturePolicy`.
        negatives: ``(K, D)`` extra negatives shared by every anchor.
        reduction: ``"mean"`` (scalar), ``"sum"`` or ``"none"`` (``(2N,)``, anchors ordered
            ``[z1 rows; z2 rows]``).
        step: training step passed to scheduled policies.
        backend: ``"auto"``, ``"dense"`` or ``"tiled"`` (memory-bounded) kernel.

    Returns:
        The loss (float32 or float64).

    Raises:
        ValueError: shapes differ, not 2-D, N < 2, NaN/Inf, τ ≤ 0.

    Example:
        >>> import torch
        >>> z = torch.ones(4, 8)
        >>> round(float(nt_xent(z, z)), 4)  # identical embeddings: log(2N − 1)
        1.9459
    """
    check_reduction(reduction)
    setup = pair_setup(z1, z2, negatives)
    loss, has_pos = contrastive_loss(
        setup.anchors,
        setup.contrast,
        tau_fn(temperature, step),
        anchor_ids=setup.anchor_ids,
        contrast_ids=setup.contrast_ids,
        self_index=setup.self_index,
        backend=backend,
    )
    return reduce(loss, has_pos, reduction)


def hard_nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: TemperatureLike = 0.5,
    *,
    top_k: int | None = None,
    alpha: float | None = None,
    negatives: Tensor | None = None,
    reduction: Reduction = "mean",
    step: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """Wang & Liu's hard contrastive loss (CVPR 2021), on NT-Xent's 2N anchors.

    Like :func:`nt_xent`, but each anchor's denominator holds its positive plus only its
    ``top_k`` most similar negatives (by cosine similarity); the other negatives get no gradient.
    ``alpha`` gives ``top_k = ceil(alpha · n_negatives)`` (the paper's upper-α quantile: 0.0819
    CIFAR, 0.0315 SVHN, 0.034 ImageNet-100). With ``top_k = n_negatives`` this is NT-Xent.

    Args:
        z1, z2: ``(N, D)`` two views, N ≥ 2.
        temperature: float or policy.
        top_k: number of hardest negatives kept, in ``[1, 2N − 2 + K]``.
        alpha: fraction of negatives kept, in (0, 1]. Exactly one of ``top_k`` and ``alpha``.
        negatives: ``(K, D)`` external negatives (memory bank).
        reduction, step, backend: as in :func:`nt_xent`.

    Raises:
        ValueError: as :func:`nt_xent`; both or neither of top_k/alpha; top_k out of range.
    """
    check_reduction(reduction)
    setup = pair_setup(z1, z2, negatives)
    k = resolve_top_k(top_k, alpha, setup.n_negatives, required=True)
    loss, has_pos = contrastive_loss(
        setup.anchors,
        setup.contrast,
        tau_fn(temperature, step),
        anchor_ids=setup.anchor_ids,
        contrast_ids=setup.contrast_ids,
        self_index=setup.self_index,
        top_k=k,
        backend=backend,
    )
    return reduce(loss, has_pos, reduction)


def multiview_nt_xent(
    views: Tensor,
    temperature: TemperatureLike = 0.5,
    *,
    reduction: Reduction = "mean",
    step: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """NT-Xent over V ≥ 2 views: every other view of the same sample is a positive.

    This is SupCon's L_out with labels = sample ids (Khosla et al. 2020); for V = 2 it equals
    :func:`nt_xent` (with anchors ordered view-major: view 0's N rows, then view 1's, ...).

    Args:
        views: ``(N, V, D)`` embeddings, N ≥ 2 samples, V ≥ 2 views.
        temperature, reduction, step, backend: as in :func:`nt_xent`; "none" gives ``(N·V,)``.
    """
    check_embeddings(views, "views", ndim=3)
    if views.shape[0] < 2 or views.shape[1] < 2:
        raise ValueError(
            f"views must have shape (N, V, D) with N >= 2 samples and V >= 2 views; got {tuple(views.shape)}"
        )
    return supcon(views, temperature=temperature, reduction=reduction, step=step, backend=backend)
