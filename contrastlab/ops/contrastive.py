"""The one code path under every softmax-based contrastive loss.

Every loss of the NT-Xent family (SimCLR's NT-Xent, multi-view NT-Xent, SupCon L_out / L_in,
MoCo's queue InfoNCE with or without queue labels, Wang & Liu's hard contrastive loss) is a masked
log-softmax over a similarity matrix between *anchors* and a *contrast set*, with a temperature per
logit. This module states that computation once:

* ``S = anchors @ contrast.T`` (``M × C``), optionally preceded by one *paired* column
  ``s_i0 = anchors_i · paired_i`` (MoCo's positive key);
* the anchor itself (column ``self_index[i]``) is excluded from the denominator ``A(i)``;
* positives ``P(i) ⊆ A(i)``: the paired column, plus columns whose id equals the anchor's id
  (``contrast_ids < 0`` never match), or an explicit boolean mask;
* optionally only the ``top_k`` most similar negatives stay in ``A(i)`` (Wang & Liu's hard loss);
* logits ``S / τ`` with ``τ = tau_fn(S, positive_mask)`` broadcastable to ``S``;
* ``variant="out"``: ``l_i = LSE_{a∈A(i)} − mean_{p∈P(i)} logit_ip``  (SupCon L_out, NT-Xent);
  ``variant="in"``:  ``l_i = LSE_{a∈A(i)} − LSE_{p∈P(i)} + log|P(i)|`` (SupCon L_in).

Everything after the matrix product runs in log-sum-exp form in at least float32, so τ = 0.01
does not overflow. Anchors without a positive get loss 0 and ``has_positive = False``.

``contrastive_loss`` is the dispatcher the losses call; its ``backend`` argument chooses the
dense path here or the memory-bounded tiled kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = ["Backend", "TauFn", "Variant", "contrastive_loss", "contrastive_loss_dense"]

#: ``tau_fn(sim, positive)`` returns the temperature, broadcastable to ``sim``. ``positive`` is a
#: boolean tensor of ``sim``'s shape marking positive logits.
TauFn = Callable[[Tensor, Tensor], Tensor]
Variant = Literal["out", "in"]
Backend = Literal["auto", "dense", "tiled"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _positive_mask(
    m: int,
    c: int,
    device: torch.device,
    anchor_ids: Tensor | None,
    contrast_ids: Tensor | None,
    pos_mask: Tensor | None,
) -> Tensor:
    if pos_mask is not None:
        return pos_mask.to(device=device, dtype=torch.bool)
    if anchor_ids is not None and contrast_ids is not None:
        return (anchor_ids[:, None] == contrast_ids[None, :]) & (contrast_ids[None, :] >= 0)
    return torch.zeros(m, c, dtype=torch.bool, device=device)


def _top_k_keep(sim: Tensor, negative: Tensor, top_k: int) -> Tensor:
    """Boolean mask of the ``top_k`` most similar negatives per row (exactly ``top_k`` each)."""
    scores = sim.detach().masked_fill(~negative, -math.inf)
    idx = scores.topk(top_k, dim=1).indices
    keep = torch.zeros_like(negative)
    keep.scatter_(1, idx, True)
    return keep & negative


def contrastive_loss_dense(
    anchors: Tensor,
    contrast: Tensor,
    tau_fn: TauFn,
    *,
    anchor_ids: Tensor | None = None,
    contrast_ids: Tensor | None = None,
    pos_mask: Tensor | None = None,
    self_index: Tensor | None = None,
    paired: Tensor | None = None,
    variant: Variant = "out",
    top_k: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Dense reference path of :func:`contrastive_loss` (builds the ``M × C`` logits).

    The similarities are computed in at least float32 even under autocast: at τ = 0.01 a bf16
    product's rounding (~0.004 in a cosine) would move each logit by ~0.4."""
    cdt = _compute_dtype(anchors.dtype)
    with torch.autocast(anchors.device.type, enabled=False):
        return _dense(
            anchors.to(cdt),
            contrast.to(cdt),
            tau_fn,
            anchor_ids,
            contrast_ids,
            pos_mask,
            self_index,
            None if paired is None else paired.to(cdt),
            variant,
            top_k,
        )


def _dense(
    anchors: Tensor,
    contrast: Tensor,
    tau_fn: TauFn,
    anchor_ids: Tensor | None,
    contrast_ids: Tensor | None,
    pos_mask: Tensor | None,
    self_index: Tensor | None,
    paired: Tensor | None,
    variant: Variant,
    top_k: int | None,
) -> tuple[Tensor, Tensor]:
    m, c = anchors.shape[0], contrast.shape[0]
    device = anchors.device
    cdt = anchors.dtype
    sim = anchors @ contrast.T
    pos = _positive_mask(m, c, device, anchor_ids, contrast_ids, pos_mask)
    valid = torch.ones(m, c, dtype=torch.bool, device=device)
    if self_index is not None:
        rows = torch.nonzero(self_index >= 0).squeeze(1)
        valid[rows, self_index[rows]] = False
    if paired is not None:
        s0 = (anchors * paired).sum(dim=1, keepdim=True).to(cdt)
        sim = torch.cat([s0, sim], dim=1)
        ones = torch.ones(m, 1, dtype=torch.bool, device=device)
        pos = torch.cat([ones, pos], dim=1)
        valid = torch.cat([ones, valid], dim=1)
    pos = pos & valid
    if top_k is not None:
        negative = valid & ~pos
        valid = pos | _top_k_keep(sim, negative, top_k)
    tau = tau_fn(sim, pos)
    logits = sim / tau
    lse_all = torch.logsumexp(logits.masked_fill(~valid, -math.inf), dim=1)
    n_pos = pos.sum(dim=1)
    has_pos = n_pos > 0
    if variant == "out":
        mean_pos = logits.masked_fill(~pos, 0.0).sum(dim=1) / n_pos.clamp(min=1)
        loss = lse_all - mean_pos
    else:
        # Rows without positives take every column so the unused LSE stays finite (no NaN grads).
        pos_rows = pos | ~has_pos[:, None]
        lse_pos = torch.logsumexp(logits.masked_fill(~pos_rows, -math.inf), dim=1)
        loss = lse_all - lse_pos + torch.log(n_pos.clamp(min=1).to(cdt))
    loss = torch.where(has_pos, loss, torch.zeros_like(loss))
    return loss, has_pos


def _backward_will_run(
    anchors: Tensor, contrast: Tensor, paired: Tensor | None, tau_fn: TauFn
) -> bool:
    """Whether autograd will differentiate the loss: grad mode on and some input needs it."""
    if not torch.is_grad_enabled():
        return False
    params = tau_fn.parameters() if isinstance(tau_fn, torch.nn.Module) else ()
    inputs = (anchors, contrast, *(() if paired is None else (paired,)), *params)
    return any(t.requires_grad for t in inputs)


def contrastive_loss(
    anchors: Tensor,
    contrast: Tensor,
    tau_fn: TauFn,
    *,
    anchor_ids: Tensor | None = None,
    contrast_ids: Tensor | None = None,
    pos_mask: Tensor | None = None,
    self_index: Tensor | None = None,
    paired: Tensor | None = None,
    variant: Variant = "out",
    top_k: int | None = None,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Per-anchor masked-softmax contrastive loss (see the module docstring for the formula).

    Args:
        anchors: ``(M, D)`` unit-norm anchor embeddings.
        contrast: ``(C, D)`` unit-norm contrast set (in-batch views, a queue, gathered negatives).
        tau_fn: maps ``(sim, positive)`` to a temperature broadcastable to ``sim``. ``sim``
            has shape ``(M, C)`` (or ``(M, 1 + C)`` with ``paired``); it carries gradients, so a
            per-pair policy must detach it itself.
        anchor_ids: ``(M,)`` int64; a column is positive when its id equals the anchor's.
        contrast_ids: ``(C,)`` int64; negative ids never match (pure negatives such as a queue).
        pos_mask: ``(M, C)`` bool, an explicit positive mask instead of ids.
        self_index: ``(M,)`` int64, the column of the anchor itself in ``contrast`` (excluded
            from the denominator), or -1 for none.
        paired: ``(M, D)`` unit-norm per-anchor positive put in front of the contrast set
            (MoCo's key ``k_i``).
        variant: ``"out"`` (SupCon L_out, NT-Xent) or ``"in"`` (SupCon L_in).
        top_k: keep only this many most similar negatives per anchor in the denominator.
        backend: ``"dense"`` builds the ``M × C`` logits (the reference); ``"tiled"`` is the
            memory-bounded kernel (peak extra memory O((M + C)·D + tile)); ``"auto"`` runs the
            dense path for tiny problems and for a per-pair τ that carries a gradient when the
            ``M × C`` matrix fits ``TileOptions.store_bytes``, else the tiled kernel, which keeps
            up to :class:`~contrastlab.ops.tiled.TileOptions` ``.store_bytes`` (512 MiB) of its
            exponential tiles for the backward when one will run (all of them when the matrix
            fits: then nothing is recomputed; only for a scalar τ and L_out without a mask).

    Raises:
        ValueError: an unknown ``backend`` or ``variant``, ``top_k`` < 1, or a ``pos_mask``
            that is not ``(M, C)`` bool.

    Returns:
        ``(loss, has_positive)``: ``(M,)`` per-anchor losses (0 where no positive) in at least
        float32, and the ``(M,)`` bool mask of anchors that have a positive.
    """
    if backend not in ("auto", "dense", "tiled"):
        raise ValueError(f"backend must be 'auto', 'dense' or 'tiled', got {backend!r}")
    if variant not in ("out", "in"):
        raise ValueError(f"variant must be 'out' or 'in', got {variant!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    shape = (anchors.shape[0], contrast.shape[0])
    if pos_mask is not None and (pos_mask.dtype != torch.bool or tuple(pos_mask.shape) != shape):
        raise ValueError(
            f"pos_mask must be bool of shape {shape}, got {pos_mask.dtype} {tuple(pos_mask.shape)}"
        )
    from contrastlab.ops.tiled import choose_backend, contrastive_loss_tiled

    store = False
    if backend == "auto":
        backend, store = choose_backend(anchors, contrast.shape[0] + (paired is not None), tau_fn)
        # Stored tiles only serve a backward: without one they would just hold memory.
        store = store and _backward_will_run(anchors, contrast, paired, tau_fn)
    run = contrastive_loss_dense if backend == "dense" else contrastive_loss_tiled
    extra = {} if backend == "dense" else {"store": store}
    return run(
        anchors,
        contrast,
        tau_fn,
        anchor_ids=anchor_ids,
        contrast_ids=contrast_ids,
        pos_mask=pos_mask,
        self_index=self_index,
        paired=paired,
        variant=variant,
        top_k=top_k,
        **extra,
    )
