"""The autograd kernel behind ``backend="tiled"``: blocked similarities, online log-sum-exp.

Notation (see :mod:`contrastlab.ops.contrastive`): anchors ``A`` (M, D), contrast ``C`` (C, D),
optional paired column ``p`` (M, D), logits ``L = S / τ`` with ``S = A Cᵀ``. For a scalar τ the
kernel works with ``X = A / τ`` so that a tile of logits is one matrix product ``X_r C_cᵀ``; for a
per-pair τ (computed from detached similarities) ``X = A`` and each tile is divided by its τ.

Forward: for every row block ``r`` and column block ``c`` one ``(r, c)`` tile of logits is built,
excluded entries (the anchor itself, negatives outside the top-k) are set to −inf, and the per-row
running maximum and sum of exponentials are updated (online LSE). Positives contribute per tile
(sum of positive logits and their count for ``"out"``, a second online LSE for ``"in"``) or, for
a scalar τ with ``"out"`` and id-defined positives, in closed form through per-class sums of the
contrast rows (``Σ_{p∈P(i)} x_i·c_p = x_i·Σ_{p∈P(i)} c_p``), so those tiles need no mask at all.
Only per-row statistics are saved.

Backward: tiles are recomputed, ``P = exp(L − lse)``, ``∂l/∂L = g·(P − W)`` with ``W`` the
positive weights (``1/|P(i)|`` or the softmax over positives), and ``∂/∂X += (∂l/∂L) C_c``,
``∂/∂C_c += (∂l/∂L)ᵀ X_r``. With ``store`` (chosen by ``"auto"`` when the matrix fits a budget)
the forward keeps its exponential tiles and the backward is two matrix products per tile.
A learnable scalar τ gets ``∂l/∂τ = −(1/τ) Σ_i x_i·∂l/∂x_i``, an exact identity that costs
O(M·D). Peak extra memory: O((M + C)·D + tile) (+ M·C with ``store``, + M·top_k for top-k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contrastlab.ops.contrastive import TauFn

__all__ = ["KernelPlan", "TiledContrastive"]

#: Skip the per-tile row maximum when every logit of the tile is provably ≤ running max + this.
_BOUND = 60.0


@dataclass
class KernelPlan:
    """Everything about one kernel call except the differentiable tensors.

    Attributes:
        pair_tau: per-pair τ function (detached from the similarities), or None for a scalar τ.
        variant: ``"out"`` or ``"in"``.
        rows, cols: tile shape.
        anchor_ids, contrast_ids, pos_mask, self_index, top_k: as in ``contrastive_loss``.
        store_bytes: keep exponential tiles from the forward, up to this many bytes, instead of
            recomputing them in the backward (only with :attr:`class_sums`).
    """

    pair_tau: TauFn | None
    variant: str
    rows: int
    cols: int
    anchor_ids: Tensor | None
    contrast_ids: Tensor | None
    pos_mask: Tensor | None
    self_index: Tensor | None
    top_k: int | None
    store_bytes: int

    @property
    def class_sums(self) -> bool:
        """Positives in closed form: scalar τ, ``"out"``, no explicit mask."""
        return self.pair_tau is None and self.variant == "out" and self.pos_mask is None


def _blocks(n: int, b: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + b)) for s in range(0, n, b)]


class _Tiles:
    """Builds logit tiles (and their masks) for the forward, the backward and the top-k pass."""

    def __init__(self, plan: KernelPlan, x: Tensor, a: Tensor, c: Tensor) -> None:
        # x: anchors scaled so that one product gives a tile in the kernel's logit units.
        self.plan, self.x, self.a, self.c = plan, x, a, c
        self.topk_idx: Tensor | None = None
        self.need_pos = not plan.class_sums or plan.top_k is not None or plan.pair_tau is not None
        self._buf = torch.empty(0, dtype=x.dtype, device=x.device)

    def buffer(self, r: int, c: int, fresh: bool) -> Tensor:
        if fresh:
            return torch.empty(r, c, dtype=self.x.dtype, device=self.x.device)
        if self._buf.numel() < r * c:
            self._buf = torch.empty(r * c, dtype=self.x.dtype, device=self.x.device)
        return self._buf[: r * c].view(r, c)

    def self_cells(self, r0: int, r1: int, c0: int, c1: int) -> tuple[Tensor, Tensor] | None:
        """Local (row, col) of the anchors' own columns inside the tile, or None."""
        si = self.plan.self_index
        if si is None:
            return None
        s = si[r0:r1]
        ri = ((s >= c0) & (s < c1)).nonzero().squeeze(1)
        if ri.numel() == 0:
            return None
        return ri, s[ri] - c0

    def positives(self, r0: int, r1: int, c0: int, c1: int) -> Tensor:
        """``(r, c)`` bool positives of the tile (the anchor's own column not yet removed)."""
        p = self.plan
        if p.pos_mask is not None:
            return p.pos_mask[r0:r1, c0:c1].clone()
        if p.anchor_ids is not None and p.contrast_ids is not None:
            cid = p.contrast_ids[c0:c1]
            return (p.anchor_ids[r0:r1, None] == cid[None, :]) & (cid >= 0)[None, :]
        return torch.zeros(r1 - r0, c1 - c0, dtype=torch.bool, device=self.x.device)

    def keep(self, r0: int, r1: int, c0: int, c1: int) -> Tensor:
        """``(r, c)`` bool: columns among the rows' top-k negatives."""
        assert self.topk_idx is not None
        idx = self.topk_idx[r0:r1]
        inside = (idx >= c0) & (idx < c1)
        rows = torch.arange(r1 - r0, device=idx.device)[:, None].expand_as(idx)
        keep = torch.zeros(r1 - r0, c1 - c0, dtype=torch.bool, device=idx.device)
        keep[rows[inside], idx[inside] - c0] = True
        return keep

    def logits(
        self, r0: int, r1: int, c0: int, c1: int, fresh: bool = False
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(L, positive, τ)`` of a tile: L with −inf where excluded; τ only when per-pair."""
        p = self.plan
        lg = torch.mm(self.x[r0:r1], self.c[c0:c1].T, out=self.buffer(r1 - r0, c1 - c0, fresh))
        pos = self.positives(r0, r1, c0, c1) if self.need_pos else None
        cells = self.self_cells(r0, r1, c0, c1)
        if cells is not None and pos is not None:
            pos[cells] = False
        tau = None
        if p.pair_tau is not None:
            assert pos is not None
            tau = p.pair_tau(lg, pos)
            lg.div_(tau)
        if cells is not None:
            lg[cells] = -math.inf
        if p.top_k is not None:
            assert pos is not None
            lg.masked_fill_(~(self.keep(r0, r1, c0, c1) | pos), -math.inf)
        return lg, pos, tau

    def find_top_k(self, k: int) -> None:
        """Streaming top-k over column tiles: each row's k most similar negatives (−1 = none)."""
        m, n = self.a.shape[0], self.c.shape[0]
        out = torch.empty(m, k, dtype=torch.long, device=self.a.device)
        for r0, r1 in _blocks(m, self.plan.rows):
            vals = torch.empty(r1 - r0, 0, dtype=self.a.dtype, device=self.a.device)
            idx = torch.empty(r1 - r0, 0, dtype=torch.long, device=self.a.device)
            for c0, c1 in _blocks(n, self.plan.cols):
                s = self.a[r0:r1] @ self.c[c0:c1].T
                neg = ~self.positives(r0, r1, c0, c1)
                cells = self.self_cells(r0, r1, c0, c1)
                if cells is not None:
                    neg[cells] = False
                s.masked_fill_(~neg, -math.inf)
                cols = torch.arange(c0, c1, device=s.device).expand(r1 - r0, -1)
                vals, j = torch.cat([vals, s], 1).topk(min(k, vals.shape[1] + c1 - c0), dim=1)
                idx = torch.cat([idx, cols], 1).gather(1, j)
            out[r0:r1] = idx.masked_fill(vals == -math.inf, -1)
        self.topk_idx = out


def _class_terms(plan: KernelPlan, c: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Closed-form positives from ids: ``(Q, n_pos, a_cls, c_cls)`` with ``Q_i = Σ_{p∈P(i)} c_p``.

    Classes are the distinct ids; contrast rows with a negative id and anchors with a negative id
    go to two extra classes that never meet.
    """
    dev = c.device
    aid, cid = plan.anchor_ids, plan.contrast_ids
    if aid is None or cid is None:
        zero = torch.zeros(m, dtype=torch.long, device=dev)
        return torch.zeros(m, c.shape[1], dtype=c.dtype, device=dev), zero, zero, zero
    uniq, inv = torch.unique(torch.cat([aid, cid]), return_inverse=True)
    k = uniq.shape[0]
    a_cls = torch.where(aid >= 0, inv[:m], k + 1)
    c_cls = torch.where(cid >= 0, inv[m:], k)
    sums = torch.zeros(k + 2, c.shape[1], dtype=c.dtype, device=dev).index_add_(0, c_cls, c)
    counts = torch.bincount(c_cls, minlength=k + 2)
    q = sums[a_cls]
    n_pos = counts[a_cls]
    if plan.self_index is not None:
        si = plan.self_index
        rows = ((si >= 0) & (c_cls[si.clamp(min=0)] == a_cls)).nonzero().squeeze(1)
        q[rows] -= c[si[rows]]
        n_pos[rows] -= 1
    return q, n_pos, a_cls, c_cls


def _exp(x: Tensor, base2: bool) -> Tensor:
    """In place ``2**x`` (logits in base-2 units: about twice as fast as ``exp``) or ``e**x``."""
    return torch.exp2(x, out=x) if base2 else x.exp_()


def _online(m: Tensor, s: Tensor, lg: Tensor, need_max: bool, base2: bool) -> Tensor:
    """Add ``lg``'s rows to the running ``(m, s)`` in place; ``lg`` becomes ``base**(lg − m)``.

    A row whose logits so far are all masked (−inf) keeps m = −inf, so that its first finite
    logits set the shift, however negative (a shift of 0 would underflow them at small τ); the
    arithmetic then shifts by 0 instead (``_shift``)."""
    if need_max:
        new = torch.maximum(m, lg.amax(dim=1))
        s.mul_(_exp(m - _shift(new), base2))
        m.copy_(new)
    _exp(lg.sub_(_shift(m)[:, None]), base2)
    s.add_(lg.sum(dim=1))
    return lg


def _shift(m: Tensor) -> Tensor:
    """The running maximum as a shift: 0 where no finite logit has been seen (m = −inf)."""
    return torch.where(m == -math.inf, torch.zeros_like(m), m)


class TiledContrastive(torch.autograd.Function):
    """``(loss, has_positive) = f(anchors, contrast, paired, tau)``; see the module docstring."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        plan: KernelPlan,
        anchors: Tensor,
        contrast: Tensor,
        paired: Tensor | None,
        tau: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        cdt = torch.promote_types(anchors.dtype, torch.float32)
        a, c = anchors.detach().to(cdt), contrast.detach().to(cdt)
        pv = None if paired is None else paired.detach().to(cdt)
        x = a if tau is None else a * (1.0 / tau.detach().to(cdt))
        # Scalar τ: tiles are built in base-2 units (x·log2 e), so 2**L replaces the slower exp.
        base2 = tau is not None
        unit = 1.0 / math.log(2.0) if base2 else 1.0
        m_rows, dev = a.shape[0], a.device
        tiles = _Tiles(plan, x * unit if base2 else x, a, c)
        if plan.top_k is not None:
            tiles.find_top_k(plan.top_k)
        mx = torch.full((m_rows,), -math.inf, dtype=cdt, device=dev)
        se = torch.zeros(m_rows, dtype=cdt, device=dev)
        psum = torch.zeros(m_rows, dtype=cdt, device=dev)
        npos = torch.zeros(m_rows, dtype=torch.long, device=dev)
        pm, ps = mx.clone(), se.clone()
        l0 = None
        if pv is not None:
            s0 = (x * pv).sum(dim=1)
            ones = torch.ones(m_rows, 1, dtype=torch.bool, device=dev)
            l0 = s0 if plan.pair_tau is None else s0 / plan.pair_tau(s0[:, None], ones)[:, 0]
            mx.copy_(l0 * unit)
            se.fill_(1.0)
            psum += l0 * unit
            npos += 1
            pm.copy_(l0 * unit)
            ps.fill_(1.0)
        if plan.class_sums:
            q, n_cls, _, _ = _class_terms(plan, c, m_rows)
            psum += (x * q).sum(dim=1) * unit
            npos += n_cls
        xnorm = tiles.x.norm(dim=1)
        cnorm = [c[c0:c1].norm(dim=1).max() for c0, c1 in _blocks(c.shape[0], plan.cols)]
        stored: dict[int, tuple[Tensor, Tensor]] = {}
        budget = plan.store_bytes if plan.class_sums else 0
        t = -1
        for r0, r1 in _blocks(m_rows, plan.rows):
            m_r, s_r = mx[r0:r1], se[r0:r1]
            for j, (c0, c1) in enumerate(_blocks(c.shape[0], plan.cols)):
                t += 1
                keep = (r1 - r0) * (c1 - c0) * a.element_size() <= budget
                budget -= (r1 - r0) * (c1 - c0) * a.element_size() if keep else 0
                lg, pos, _ = tiles.logits(r0, r1, c0, c1, fresh=keep)
                if not plan.class_sums:
                    assert pos is not None
                    npos[r0:r1] += pos.sum(dim=1)
                    if plan.variant == "out":
                        psum[r0:r1] += torch.where(pos, lg, 0.0).sum(dim=1)
                    else:
                        lp = lg.masked_fill(~pos, -math.inf)
                        _online(pm[r0:r1], ps[r0:r1], lp, True, base2)
                need_max = plan.pair_tau is not None or not bool(
                    ((s_r > 0.5) & (xnorm[r0:r1] * cnorm[j] - m_r <= _BOUND)).all()
                )
                _online(m_r, s_r, lg, need_max, base2)
                if keep:
                    stored[t] = (lg, _shift(m_r))
        has_pos = npos > 0
        # Natural-log LSE from base-unit statistics: ln Σ base**L = m / unit + ln s.
        lse = mx / unit + se.log()
        lse_pos = pm / unit + ps.log()
        if plan.variant == "out":
            loss = lse - psum / unit / npos.clamp(min=1).to(cdt)
        else:
            loss = lse - lse_pos + npos.clamp(min=1).to(cdt).log()
        loss = torch.where(has_pos, loss, torch.zeros_like(loss))
        ctx.plan, ctx.tiles, ctx.stored, ctx.l0 = plan, tiles, stored, l0
        ctx.base2, ctx.unit, ctx.x = base2, unit, x
        ctx.dtypes = (anchors.dtype, contrast.dtype, None if paired is None else paired.dtype)
        ctx.save_for_backward(a, c, pv, tau, lse, lse_pos, npos)
        ctx.mark_non_differentiable(has_pos)
        return loss, has_pos

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor, _unused: Tensor | None
    ) -> tuple[Any, ...]:
        plan: KernelPlan = ctx.plan
        tiles: _Tiles = ctx.tiles
        a, c, pv, tau, lse, lse_pos, npos = ctx.saved_tensors
        x, cdt, base2, unit = ctx.x, a.dtype, ctx.base2, ctx.unit
        has_pos = npos > 0
        inf = torch.full_like(lse, math.inf)
        g = torch.where(has_pos, grad.to(cdt), 0.0)
        lse_b = torch.where(has_pos, lse, inf)
        lse_u = lse_b * unit
        inv_n = 1.0 / npos.clamp(min=1).to(cdt)
        # "in": the positives' weights W = base**(L − lse_pos), from the logits themselves: as
        # P·exp(lse − lse_pos) they overflow to inf·0 once the positives trail by > 88 nats.
        lse_pos_u = torch.where(has_pos, lse_pos, inf) * unit
        need_c = ctx.needs_input_grad[2]
        gx = torch.zeros_like(x)
        gc = torch.zeros_like(c) if need_c else None
        gxs = g[:, None] * x
        for t, ((r0, r1), (c0, c1)) in enumerate(
            (rb, cb)
            for rb in _blocks(x.shape[0], plan.rows)
            for cb in _blocks(c.shape[0], plan.cols)
        ):
            if t in ctx.stored:
                e, shift = ctx.stored.pop(t)
                sc = _exp(shift - lse_u[r0:r1], base2)[:, None]
                gx[r0:r1] += (e @ c[c0:c1]) * sc
                if gc is not None:
                    gc[c0:c1].addmm_(e.T, gxs[r0:r1] * sc)
                continue
            lg, pos, tau_t = tiles.logits(r0, r1, c0, c1)
            w = None
            if pos is not None and plan.variant == "in" and not plan.class_sums:
                w = _exp(lg.sub(lse_pos_u[r0:r1, None]).masked_fill_(~pos, -math.inf), base2)
            d = _exp(lg.sub_(lse_u[r0:r1, None]), base2)
            if plan.class_sums:
                gx[r0:r1].addmm_(d, c[c0:c1], alpha=1.0)
                if gc is not None:
                    gc[c0:c1].addmm_(d.T, gxs[r0:r1])
                continue
            assert pos is not None
            if plan.variant == "out":
                d.sub_(pos * inv_n[r0:r1, None])
            else:
                assert w is not None
                d.sub_(w)
            d.mul_(g[r0:r1, None])
            if tau_t is not None:
                d.div_(tau_t)
            gx[r0:r1].addmm_(d, c[c0:c1])
            if gc is not None:
                gc[c0:c1].addmm_(d.T, x[r0:r1])
        if plan.class_sums:
            gx.mul_(g[:, None])
            _class_backward(plan, c, x, g * inv_n, gx, gc)
        gp = None
        if pv is not None:
            l0 = ctx.l0
            w0 = inv_n if plan.variant == "out" else torch.exp(l0 - lse_pos)
            d0 = g * (torch.exp(l0 - lse_b) - w0)
            if plan.pair_tau is not None:
                ones = torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)
                d0 = d0 / plan.pair_tau((a * pv).sum(dim=1)[:, None], ones)[:, 0]
            gx += d0[:, None] * pv
            gp = (d0[:, None] * x).to(ctx.dtypes[2])
        gtau = None
        if tau is not None:
            t = tau.detach().to(cdt)
            if ctx.needs_input_grad[4]:
                gtau = (-(x * gx).sum() / t).to(tau.dtype).reshape(tau.shape)
            gx.div_(t)
        ga = gx.to(ctx.dtypes[0])
        return (None, ga, None if gc is None else gc.to(ctx.dtypes[1]), gp, gtau)


def _class_backward(
    plan: KernelPlan, c: Tensor, x: Tensor, w: Tensor, gx: Tensor, gc: Tensor | None
) -> None:
    """Subtract the closed-form positive part ``W`` (weights ``w_i = g_i / |P(i)|``) in place."""
    q, _, a_cls, c_cls = _class_terms(plan, c, x.shape[0])
    gx.sub_(w[:, None] * q)
    if gc is None or plan.anchor_ids is None:
        return
    wx = w[:, None] * x
    sums = torch.zeros(
        max(int(a_cls.max()), int(c_cls.max())) + 1, x.shape[1], dtype=x.dtype, device=x.device
    ).index_add_(0, a_cls, wx)
    gc.sub_(sums[c_cls])
    if plan.self_index is not None:
        si = plan.self_index
        rows = ((si >= 0) & (c_cls[si.clamp(min=0)] == a_cls)).nonzero().squeeze(1)
        gc.index_add_(0, si[rows], wx[rows])
