"""Memory-bounded contrastive loss: tile planning, temperature detection, backend choice.

:func:`contrastive_loss_tiled` computes exactly what :func:`contrastive_loss_dense` computes,
without the ``M × C`` logits: see :mod:`contrastlab.ops.tiled_kernel` for the algorithm. The
temperature function is classified by calling it once on a ``2 × 2`` probe:

* one value (Fixed, Cosine, Learnable): a scalar τ, passed to the kernel as a tensor so that a
  learnable τ receives its gradient;
* one value per pair and no gradient (DySTreSS, PosNeg of fixed values): evaluated per tile;
* one value per pair that carries a gradient (e.g. PosNeg built from Learnable): the kernel
  cannot differentiate through it, so the loss runs the dense path on row blocks under
  activation checkpointing (memory O(rows · C), still no ``M × C`` tensor).

Tile sizes, and the thresholds of ``backend="auto"``, come from :class:`TileOptions`; change them
for a block of code with :func:`tiled_options` (tests force tiny tiles this way).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from contrastlab.ops.contrastive import TauFn, Variant, contrastive_loss_dense
from contrastlab.ops.tiled_kernel import KernelPlan, TiledContrastive

__all__ = ["TileOptions", "choose_backend", "contrastive_loss_tiled", "tiled_options"]


@dataclass(frozen=True)
class TileOptions:
    """Tile geometry and ``"auto"`` thresholds.

    Attributes:
        rows: anchor rows per tile (None: from ``tile_elems``).
        cols: contrast columns per tile (None: ``min(C, 4096)``).
        tile_elems: target elements of one tile when ``rows`` is None (float32: 4 bytes each).
        store_bytes: ``"auto"`` keeps up to this many bytes of the forward's exponential tiles
            (those tiles are not recomputed in the backward); 0 disables it.
        dense_elems: ``"auto"`` uses the dense reference path when ``M·C`` is at most this.
    """

    rows: int | None = None
    cols: int | None = None
    tile_elems: int = 1 << 21
    store_bytes: int = 1 << 29
    dense_elems: int = 0


# TileOptions is frozen, so sharing one default instance is safe.
_OPTIONS: ContextVar[TileOptions] = ContextVar(
    "contrastlab_tile_options",
    default=TileOptions(),  # noqa: B039
)


@contextmanager
def tiled_options(**changes: int | None) -> Iterator[TileOptions]:
    """Temporarily change :class:`TileOptions` fields, e.g. ``tiled_options(rows=5, cols=7)``."""
    opts = dataclasses.replace(_OPTIONS.get(), **changes)  # type: ignore[arg-type]
    for name in ("rows", "cols"):
        v = getattr(opts, name)
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {v}")
    token = _OPTIONS.set(opts)
    try:
        yield opts
    finally:
        _OPTIONS.reset(token)


def _tile_shape(m: int, c: int, opts: TileOptions) -> tuple[int, int]:
    cols = opts.cols or min(max(c, 1), 4096)
    rows = opts.rows or max(256, opts.tile_elems // cols)
    return max(1, min(rows, m)), max(1, min(cols, max(c, 1)))


TauKind = Literal["scalar", "pair", "pair_grad"]


def classify_tau(tau_fn: TauFn, dtype: torch.dtype, device: torch.device) -> tuple[TauKind, Tensor]:
    """Call ``tau_fn`` on a ``2 × 2`` probe: ``("scalar", τ)``, ``("pair", _)`` or ``("pair_grad", _)``.

    A τ that comes back as a single value is taken to be independent of the similarities (true
    of every scalar policy in :mod:`contrastlab.temperature`).
    """
    probe = torch.tensor([[0.3, -0.2], [0.1, 0.9]], dtype=dtype, device=device, requires_grad=True)
    positive = torch.tensor([[True, False], [False, True]], device=device)
    with torch.enable_grad():
        tau = tau_fn(probe, positive)
    if tau.numel() == 1:
        return "scalar", tau.reshape(())
    return ("pair_grad" if tau.requires_grad else "pair"), tau


def choose_backend(
    anchors: Tensor, c: int, tau_fn: TauFn
) -> tuple[Literal["dense", "tiled"], bool]:
    """The ``"auto"`` choice for ``M = len(anchors)`` anchors and ``c`` columns.

    Returns ``(backend, store)``: dense for tiny problems (``TileOptions.dense_elems``) and for
    a grad-carrying per-pair τ whose matrix fits ``store_bytes``; otherwise the tiled kernel,
    keeping up to ``store_bytes`` of its exponential tiles (``store``: all of them when the
    ``M × C`` matrix fits, so the backward recomputes nothing).
    """
    opts = _OPTIONS.get()
    m = anchors.shape[0]
    cdt = torch.promote_types(anchors.dtype, torch.float32)
    fits = m * c * torch.finfo(cdt).bits // 8 <= opts.store_bytes
    if m * c <= opts.dense_elems:
        return "dense", False
    kind, _ = classify_tau(tau_fn, cdt, anchors.device)
    if kind == "pair_grad" and fits:
        return "dense", False
    return "tiled", opts.store_bytes > 0


def contrastive_loss_tiled(
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
    store: bool = False,
) -> tuple[Tensor, Tensor]:
    """Blocked, memory-bounded :func:`~contrastlab.ops.contrastive_loss` (same arguments).

    Args:
        anchors, contrast, tau_fn, anchor_ids, contrast_ids, pos_mask, self_index, paired,
            variant, top_k: as in :func:`~contrastlab.ops.contrastive_loss`.
        store: keep the forward's exponential tiles for the backward, up to
            ``TileOptions.store_bytes``, instead of recomputing them (fewer matrix products; used
            by ``"auto"``). Only effective for a scalar τ, ``variant="out"``, no ``pos_mask``.

    Returns:
        ``(loss, has_positive)``, both ``(M,)``, equal to the dense path's.
    """
    m, c = anchors.shape[0], contrast.shape[0]
    cdt = torch.promote_types(anchors.dtype, torch.float32)
    kind, tau = classify_tau(tau_fn, cdt, anchors.device)
    dev = anchors.device
    if kind == "pair_grad":
        return _row_checkpointed(
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
        )
    rows, cols = _tile_shape(m, c, _OPTIONS.get())
    scalar = kind == "scalar"
    plan = KernelPlan(
        pair_tau=None if scalar else tau_fn,
        variant=variant,
        rows=rows,
        cols=cols,
        anchor_ids=None if anchor_ids is None else anchor_ids.to(dev),
        contrast_ids=None if contrast_ids is None else contrast_ids.to(dev),
        pos_mask=None if pos_mask is None else pos_mask.to(device=dev, dtype=torch.bool),
        self_index=None if self_index is None else self_index.to(dev),
        top_k=top_k,
        store_bytes=_OPTIONS.get().store_bytes if store else 0,
    )
    out: tuple[Tensor, Tensor] = TiledContrastive.apply(
        plan, anchors, contrast, paired, tau if scalar else None
    )
    return out


def _row_checkpointed(
    anchors: Tensor,
    contrast: Tensor,
    tau_fn: TauFn,
    *,
    anchor_ids: Tensor | None,
    contrast_ids: Tensor | None,
    pos_mask: Tensor | None,
    self_index: Tensor | None,
    paired: Tensor | None,
    variant: Variant,
    top_k: int | None,
) -> tuple[Tensor, Tensor]:
    """Dense path on row blocks of ``rows × C`` under checkpointing (grad-carrying per-pair τ)."""
    m, c = anchors.shape[0], contrast.shape[0]
    opts = _OPTIONS.get()
    rows = opts.rows or max(1, opts.tile_elems // max(c, 1))
    losses: list[Tensor] = []
    flags: list[Tensor] = []
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)

        def block(
            a: Tensor, ctr: Tensor, p: Tensor | None, r0: int = r0, r1: int = r1
        ) -> tuple[Tensor, Tensor]:
            return contrastive_loss_dense(
                a,
                ctr,
                tau_fn,
                anchor_ids=None if anchor_ids is None else anchor_ids[r0:r1],
                contrast_ids=contrast_ids,
                pos_mask=None if pos_mask is None else pos_mask[r0:r1],
                self_index=None if self_index is None else self_index[r0:r1],
                paired=p,
                variant=variant,
                top_k=top_k,
            )

        p_blk = None if paired is None else paired[r0:r1]
        loss, flag = checkpoint(block, anchors[r0:r1], contrast, p_blk, use_reentrant=False)
        losses.append(loss)
        flags.append(flag)
    return torch.cat(losses), torch.cat(flags)
