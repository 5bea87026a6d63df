"""Independent float64 reference implementations, written directly from SPEC.md.

Nothing here calls or mirrors contrastlab. The loss oracles are plain Python loops over
anchors and pairs; torch is used only as a float64 scalar calculator so that autograd
gives reference gradients. The metric oracles loop over rows in numpy float64.

Temperatures: every loss oracle takes ``tau`` as either a number / 0-d tensor (one τ for
all logits), or a callable ``tau(s: float, positive: bool) -> float`` evaluated on the
*detached* similarity of each logit (so no gradient flows through τ; SPEC §3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

Tau = Any  # float | torch.Tensor | Callable[[float, bool], float]


# --------------------------------------------------------------------------- helpers
def unit_rows(z: torch.Tensor) -> list[torch.Tensor]:
    """L2-normalise each row: z_i / sqrt(Σ_d z_id²), in float64."""
    out = []
    for row in z.to(torch.float64):
        out.append(row / torch.sqrt((row * row).sum()))
    return out


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


def logsumexp(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    m = max(float(x.detach()) for x in xs)
    total = 0.0
    for x in xs:
        total = total + torch.exp(x - m)
    return m + torch.log(total)


def tau_of(tau: Tau, s: torch.Tensor, positive: bool, detach_tau: bool = True) -> Any:
    if callable(tau):
        if not detach_tau:  # τ as a differentiable function of s (the wrong way, for contrast)
            return tau(s, positive)
        return float(tau(float(s.detach()), positive))
    return tau


def reduce(losses: list[torch.Tensor], has_pos: list[bool], reduction: str) -> torch.Tensor:
    """"none": per-anchor vector (0 for anchors without positives); "sum": Σ; "mean": mean
    over the anchors that have at least one positive."""
    zero = torch.zeros((), dtype=torch.float64)
    vals = [l if hp else zero for l, hp in zip(losses, has_pos, strict=True)]
    if reduction == "none":
        return torch.stack(vals)
    total = 0.0
    for v in vals:
        total = total + v
    total = torch.as_tensor(total, dtype=torch.float64) if not torch.is_tensor(total) else total
    if reduction == "sum":
        return total
    if reduction == "mean":
        count = sum(1 for hp in has_pos if hp)
        return total / max(count, 1)
    raise ValueError(reduction)


# --------------------------------------------------------------------- SPEC §1 / §2
def nt_xent(z1, z2, tau: Tau = 0.5, negatives=None, reduction: str = "mean",
            detach_tau: bool = True) -> torch.Tensor:
    """SPEC §1: anchors [z1; z2]; l_i = -log(exp(s_ip/τ) / Σ_{k≠i} exp(s_ik/τ)), plus
    external negatives in the denominator."""
    n = z1.shape[0]
    z = unit_rows(z1) + unit_rows(z2)
    ext = unit_rows(negatives) if negatives is not None else []
    losses = []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        logits, pos_logit = [], None
        for k in range(2 * n):
            if k == i:
                continue
            s = dot(z[i], z[k])
            logit = s / tau_of(tau, s, k == p, detach_tau)
            logits.append(logit)
            if k == p:
                pos_logit = logit
        for e in ext:
            s = dot(z[i], e)
            logits.append(s / tau_of(tau, s, False, detach_tau))
        losses.append(logsumexp(logits) - pos_logit)
    return reduce(losses, [True] * (2 * n), reduction)


def nt_xent_similarity_level(s_pos: torch.Tensor, s_neg: torch.Tensor, tau: float) -> torch.Tensor:
    """One anchor's loss as a function of its similarities (SPEC §2)."""
    logits = [s_pos / tau] + [s / tau for s in s_neg]
    return logsumexp(logits) - s_pos / tau


def hard_nt_xent(z1, z2, tau: Tau = 0.5, top_k: int | None = None, alpha: float | None = None,
                 negatives=None, reduction: str = "mean") -> torch.Tensor:
    """SPEC §2 hard contrastive loss: denominator = positive + the top_k most similar
    negatives (by cosine similarity). alpha gives top_k = ceil(alpha * #negatives)."""
    n = z1.shape[0]
    z = unit_rows(z1) + unit_rows(z2)
    ext = unit_rows(negatives) if negatives is not None else []
    n_neg = 2 * n - 2 + len(ext)
    if alpha is not None:
        top_k = math.ceil(round(alpha * n_neg, 9))  # 0.07 · 100 = 7, not 8
    assert top_k is not None
    losses = []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        s_pos = dot(z[i], z[p])
        negs = [dot(z[i], z[k]) for k in range(2 * n) if k not in (i, p)]
        negs += [dot(z[i], e) for e in ext]
        negs = sorted(negs, key=lambda x: float(x.detach()), reverse=True)[:top_k]
        logits = [s_pos / tau_of(tau, s_pos, True)] + [s / tau_of(tau, s, False) for s in negs]
        losses.append(logsumexp(logits) - logits[0])
    return reduce(losses, [True] * (2 * n), reduction)


def simple(z1, z2, lam: float | None = None, negatives=None, top_k: int | None = None,
           reduction: str = "mean") -> torch.Tensor:
    """SPEC §2 simple loss: -s_ip + λ Σ_{negatives k} s_ik, with λ = 1/#negatives by default;
    with top_k, only the top_k most similar negatives are summed (HardSimple), and the default
    λ is 1/top_k (the τ → ∞ limit of the hard NT-Xent loss with top_k negatives)."""
    n = z1.shape[0]
    z = unit_rows(z1) + unit_rows(z2)
    ext = unit_rows(negatives) if negatives is not None else []
    losses = []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        negs = [dot(z[i], z[k]) for k in range(2 * n) if k not in (i, p)]
        negs += [dot(z[i], e) for e in ext]
        if top_k is not None:
            negs = sorted(negs, key=lambda x: float(x.detach()), reverse=True)[:top_k]
        lam_i = lam if lam is not None else 1.0 / len(negs)
        total = 0.0
        for s in negs:
            total = total + s
        losses.append(-dot(z[i], z[p]) + lam_i * total)
    return reduce(losses, [True] * (2 * n), reduction)


# ------------------------------------------------------------------------- SPEC §5
def supcon(features, labels=None, mask=None, tau: Tau = 0.1, variant: str = "out",
           contrast_mode: str = "all", base_temperature: float | None = None,
           reduction: str = "mean") -> torch.Tensor:
    """SPEC §5. features (N, V, D); views flattened view-major (index a = v*N + n).
    A(a) = all views but a; P(a) = views in A(a) of a positive sample."""
    n, v, _ = features.shape
    flat = torch.stack([features[s, w] for w in range(v) for s in range(n)])
    z = unit_rows(flat)
    total_views = n * v

    def is_pos(a: int, b: int) -> bool:
        if a == b:
            return False
        sa, sb = a % n, b % n
        if mask is not None:
            return float(mask[sa, sb]) != 0.0
        if labels is not None:
            return int(labels[sa]) == int(labels[sb])
        return sa == sb

    anchors = range(total_views) if contrast_mode == "all" else range(n)
    losses, has_pos = [], []
    for a in anchors:
        logits, pos_logits = [], []
        for b in range(total_views):
            if b == a:
                continue
            s = dot(z[a], z[b])
            pos = is_pos(a, b)
            logit = s / tau_of(tau, s, pos)
            logits.append(logit)
            if pos:
                pos_logits.append(logit)
        lse = logsumexp(logits)
        if not pos_logits:
            losses.append(torch.zeros((), dtype=torch.float64))
            has_pos.append(False)
            continue
        if variant == "out":
            acc = 0.0
            for lp in pos_logits:
                acc = acc + (lp - lse)
            loss = -acc / len(pos_logits)
        else:
            loss = -(logsumexp(pos_logits) - math.log(len(pos_logits)) - lse)
        if base_temperature is not None:
            loss = loss * (tau / base_temperature)
        losses.append(loss)
        has_pos.append(True)
    return reduce(losses, has_pos, reduction)


# ------------------------------------------------------------------------- SPEC §6
def moco(q, k, queue, tau: Tau = 0.2, queue_labels=None, labels=None,
         reduction: str = "mean") -> torch.Tensor:
    """SPEC §6: logits [q_i·k_i, q_i·queue_j]/τ, target 0. Supervised: positives are k_i and
    the queue entries sharing the label, averaged L_out style."""
    qs, ks, qu = unit_rows(q), unit_rows(k), unit_rows(queue)
    losses = []
    for i in range(len(qs)):
        s0 = dot(qs[i], ks[i])
        logits = [s0 / tau_of(tau, s0, True)]
        pos_idx = [0]
        for j, e in enumerate(qu):
            s = dot(qs[i], e)
            pos = labels is not None and int(queue_labels[j]) == int(labels[i])
            logits.append(s / tau_of(tau, s, pos))
            if pos:
                pos_idx.append(j + 1)
        lse = logsumexp(logits)
        acc = 0.0
        for j in pos_idx:
            acc = acc + (logits[j] - lse)
        losses.append(-acc / len(pos_idx))
    return reduce(losses, [True] * len(qs), reduction)


# ------------------------------------------------------------------------- SPEC §7
def byol(p, z, reduction: str = "mean") -> torch.Tensor:
    """SPEC §7: 2 - 2 cos(p_i, z_i), stop-gradient on z."""
    ps, zs = unit_rows(p), unit_rows(z.detach())
    losses = [2.0 - 2.0 * dot(a, b) for a, b in zip(ps, zs, strict=True)]
    return reduce(losses, [True] * len(losses), reduction)


# ------------------------------------------------------------------------- SPEC §8
def alignment_loss(z1, z2, alpha: float = 2) -> torch.Tensor:
    a, b = unit_rows(z1), unit_rows(z2)
    total = 0.0
    for x, y in zip(a, b, strict=True):
        d2 = dot(x - y, x - y)
        total = total + d2 ** (alpha / 2)
    return total / len(a)


def uniformity_loss(z, t: float = 2) -> torch.Tensor:
    zs = unit_rows(z)
    terms = []
    for i in range(len(zs)):
        for j in range(i + 1, len(zs)):
            d = zs[i] - zs[j]
            terms.append(-t * dot(d, d))
    return logsumexp(terms) - math.log(len(terms))


def align_uniform(z1, z2, alpha: float = 2, t: float = 2, w_align: float = 1.0,
                  w_unif: float = 1.0) -> torch.Tensor:
    """SPEC §8 training loss: w_a·L_align + w_u·(L_unif(x) + L_unif(y)) / 2."""
    unif = 0.5 * (uniformity_loss(z1, t) + uniformity_loss(z2, t))
    return w_align * alignment_loss(z1, z2, alpha) + w_unif * unif


# ---------------------------------------------------------------- temperature (§3, §4)
def cosine_tau(step: float, tau_min: float = 0.1, tau_max: float = 1.0,
               period: float = 200) -> float:
    return tau_min + 0.5 * (tau_max - tau_min) * (1 + math.cos(math.pi * step / period))


def dystress_tau(s: float, tau_min: float = 0.07, tau_max: float = 0.2,
                 shift: float | None = None) -> float:
    if shift is None:
        return tau_min + (tau_max - tau_min) * math.sin(math.pi * s / 2) ** 2
    if s > -shift:
        return tau_max
    return tau_min + 0.5 * (tau_max - tau_min) * (1 + math.cos(math.pi * (s + shift) / (1 - shift)))


def dystress_tau_torch(s: torch.Tensor, tau_min: float = 0.07,
                       tau_max: float = 0.2) -> torch.Tensor:
    return tau_min + (tau_max - tau_min) * torch.sin(math.pi * s / 2) ** 2


def dystress_tau_cos_form(s: float, tau_min: float = 0.07, tau_max: float = 0.2) -> float:
    return tau_min + 0.5 * (tau_max - tau_min) * (1 + math.cos(math.pi * (1 + s)))


def learnable_tau(log_scale, min_tau: float = 0.01):
    """CLIP: τ = 1/exp(scale), scale clamped at log(1/min)."""
    cap = math.log(1.0 / min_tau)
    if torch.is_tensor(log_scale):
        return torch.exp(-torch.minimum(log_scale, torch.tensor(cap, dtype=log_scale.dtype)))
    return math.exp(-min(log_scale, cap))


def posneg_tau(tau_pos: Tau, tau_neg: Tau) -> Callable[[float, bool], float]:
    def f(s: float, positive: bool) -> float:
        t = tau_pos if positive else tau_neg
        return t(s, positive) if callable(t) else float(t)

    return f


# -------------------------------------------------------------------- metrics (numpy)
def _np_unit(z) -> np.ndarray:
    z = np.asarray(torch.as_tensor(z).detach().to(torch.float64).numpy(), dtype=np.float64)
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        out[i] = z[i] / math.sqrt(float(z[i] @ z[i]))
    return out


def metric_alignment(z1, z2, alpha: float = 2) -> float:
    a, b = _np_unit(z1), _np_unit(z2)
    total = 0.0
    for i in range(a.shape[0]):
        d = a[i] - b[i]
        total += float(d @ d) ** (alpha / 2)
    return total / a.shape[0]


def metric_uniformity(z, t: float = 2) -> float:
    """-L_unif = -log mean_{i<j} exp(-t ||z_i - z_j||²)."""
    zs = _np_unit(z)
    n = zs.shape[0]
    total = 0.0
    for i in range(n - 1):
        d = zs[i + 1:] - zs[i]
        total += float(np.exp(-t * np.einsum("jd,jd->j", d, d)).sum())
    return -math.log(total / (n * (n - 1) / 2))


def metric_tolerance(z, labels) -> float:
    zs = _np_unit(z)
    lab = np.asarray(torch.as_tensor(labels).numpy())
    total, count = 0.0, 0
    for i in range(zs.shape[0]):
        same = lab == lab[i]
        same[i] = False
        total += float((zs[same] @ zs[i]).sum())
        count += int(same.sum())
    return total / count


def metric_effective_rank(z) -> float:
    x = np.asarray(torch.as_tensor(z).detach().to(torch.float64).numpy())
    sv = np.linalg.svd(x, compute_uv=False)
    p = sv / sv.sum()
    h = 0.0
    for pk in p:
        if pk > 0:
            h -= float(pk) * math.log(float(pk))
    return math.exp(h)


def metric_hardness(z1, z2, tau: Tau) -> dict[str, np.ndarray]:
    """Per anchor i of z1: positive z2_i; negatives all other 2N-2 rows of [z1; z2].
    ``tau`` is a float or a per-logit callable tau(s, positive)."""
    a, b = _np_unit(z1), _np_unit(z2)
    n = a.shape[0]
    allz = np.concatenate([a, b])
    ent, eff, mx, share = (np.empty(n) for _ in range(4))
    for i in range(n):
        keep = np.ones(2 * n, dtype=bool)
        keep[i] = keep[n + i] = False
        sims = allz[keep] @ a[i]
        sp = float(a[i] @ b[i])
        if callable(tau):
            s_neg = np.array([s / tau(float(s), False) for s in sims])
            s_pos = sp / tau(sp, True)
        else:
            s_neg, s_pos = sims / tau, sp / tau
        m = max(float(s_neg.max()), s_pos)
        w = np.exp(s_neg - m)
        r = w / w.sum()
        h = float(-(r * np.log(r)).sum())
        ent[i], eff[i], mx[i] = h, math.exp(h), float(r.max())
        share[i] = math.exp(s_pos - m) / (math.exp(s_pos - m) + float(w.sum()))
    return {"entropy": ent, "effective_negatives": eff, "max_weight": mx, "positive_share": share}
