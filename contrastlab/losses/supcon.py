"""Supervised Contrastive loss, L_out and L_in (Khosla et al. 2020)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from contrastlab.losses._common import Reduction, check_reduction, reduce, tau_fn
from contrastlab.ops import (
    Backend,
    Variant,
    check_embeddings,
    check_labels,
    contrastive_loss,
    normalize,
)
from contrastlab.temperature import TemperatureLike, as_policy

__all__ = ["supcon"]


def _check_mask(mask: object, n: int) -> Tensor:
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"mask must be a torch.Tensor of shape ({n}, {n}), got {type(mask).__name__}"
        )
    if mask.shape != (n, n):
        raise ValueError(
            f"mask must have shape ({n}, {n}) (samples × samples); got {tuple(mask.shape)}"
        )
    if mask.is_floating_point() and not bool(torch.isfinite(mask).all()):
        raise ValueError("mask must be finite (0/1 entries)")
    return mask != 0


def supcon(
    features: Tensor,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    temperature: TemperatureLike = 0.1,
    *,
    variant: Variant = "out",
    contrast_mode: Literal["all", "one"] = "all",
    reduction: Reduction = "mean",
    base_temperature: float | None = None,
    step: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), L_out (default) or L_in.

    With ``A(i)`` all contrast views but ``i`` and ``P(i)`` those with the label of ``i``::

        L_out(i) = −1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip/τ) / Σ_{a∈A(i)} exp(s_ia/τ) )
        L_in(i)  = −log( 1/|P(i)| Σ_{p∈P(i)} exp(s_ip/τ) / Σ_{a∈A(i)} exp(s_ia/τ) )

    L_in ≤ L_out by Jensen; the paper recommends L_out. The views are flattened view-major
    (view 0's N rows, then view 1's, ...). An anchor without a positive contributes 0 and is left
    out of the mean (never NaN). With neither ``labels`` nor ``mask`` each sample is its own class:
    multi-view SimCLR. Features are L2-normalised here.

    Args:
        features: ``(N, V, D)`` embeddings of V views of N samples (N·V ≥ 2).
        labels: ``(N,)`` int64 class labels; or
        mask: ``(N, N)`` explicit positives, ``mask[i, j] != 0`` when sample j is a positive for
            anchor sample i (may be asymmetric; ``mask[i, i]`` decides whether the other views of
            i are positives). Not together with ``labels``.
        temperature: float or policy (0.1 in the paper).
        variant: ``"out"`` or ``"in"``.
        contrast_mode: ``"all"`` (every view anchors) or ``"one"`` (only view 0 anchors).
        reduction: ``"mean"`` over anchors with a positive, ``"sum"`` (the paper's Σ_i) or
            ``"none"`` (``(N·V,)`` or ``(N,)`` for "one").
        base_temperature: if given, the loss is multiplied by ``τ / base_temperature`` (the
            reference code's convention, τ = base = 0.07 there); None (default) leaves it
            unscaled. With a non-constant policy its ``value(step)`` is used.
        step: training step for scheduled policies.
        backend: kernel choice, see :func:`contrastlab.ops.contrastive_loss`.

    Raises:
        ValueError/TypeError: not 3-D, NaN/Inf, both labels and mask, labels of wrong length or
            dtype, mask of wrong shape, bad variant/contrast_mode, τ ≤ 0.
    """
    check_reduction(reduction)
    check_embeddings(features, "features", ndim=3)
    n, v, _ = features.shape
    if n * v < 2:
        raise ValueError(
            f"features needs at least 2 views in total (N·V ≥ 2); got shape {tuple(features.shape)}"
        )
    if variant not in ("out", "in"):
        raise ValueError(f"variant must be 'out' or 'in', got {variant!r}")
    if contrast_mode not in ("all", "one"):
        raise ValueError(f"contrast_mode must be 'all' or 'one', got {contrast_mode!r}")
    if labels is not None and mask is not None:
        raise ValueError("give labels or mask, not both")
    device = features.device
    contrast = normalize(features.transpose(0, 1).reshape(v * n, -1))
    n_anchor_views = v if contrast_mode == "all" else 1
    anchors = contrast[: n_anchor_views * n]
    self_index = torch.arange(n_anchor_views * n, device=device)
    anchor_ids = contrast_ids = pos_mask = None
    if mask is not None:
        m = _check_mask(mask, n).to(device)
        pos_mask = m.repeat(n_anchor_views, v)
    else:
        if labels is None:
            ids = torch.arange(n, device=device)
        else:
            ids = check_labels(labels, n).to(device)
        contrast_ids = ids.repeat(v)
        anchor_ids = contrast_ids[: n_anchor_views * n]
    loss, has_pos = contrastive_loss(
        anchors,
        contrast,
        tau_fn(temperature, step),
        anchor_ids=anchor_ids,
        contrast_ids=contrast_ids,
        pos_mask=pos_mask,
        self_index=self_index,
        variant=variant,
        backend=backend,
    )
    if base_temperature is not None:
        base = as_policy(base_temperature, "base_temperature").value()
        loss = loss * (as_policy(temperature).value(step) / base)
    return reduce(loss, has_pos, reduction)
