"""Every loss against the independent float64 loop oracles (tests/losses/oracles.py):
values for all reductions, autograd gradients, temperature policies, the Wang & Liu
gradient identities and the τ → 0 / τ → ∞ limits (SPEC §1, §2, §5–§8)."""

from __future__ import annotations

import math

import oracles as O
import pytest
import torch

from contrastlab.losses import (
    LOSSES,
    alignment_loss,
    byol_loss,
    hard_nt_xent,
    hard_simple_loss,
    moco_info_nce,
    multiview_nt_xent,
    nt_xent,
    simple_loss,
    supcon,
    uniformity_loss,
)
from contrastlab.temperature import Cosine, DySTreSS, Fixed, Learnable, PosNeg

F64 = torch.float64
RTOL, ATOL = 1e-9, 1e-10
REDUCTIONS = ["mean", "sum", "none"]


def rand(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64)


def leaves(**tensors):
    """Two independent copies (library / oracle) of each input, floating ones requiring grad."""
    a, b = {}, {}
    for k, v in tensors.items():
        if torch.is_tensor(v) and v.is_floating_point():
            a[k] = v.detach().clone().requires_grad_(True)
            b[k] = v.detach().clone().requires_grad_(True)
        else:
            a[k] = b[k] = v
    return a, b


def compare(lib_fn, oracle_fn, grad_keys=None, **inputs):
    """Values equal; gradients of a random weighting of the output equal."""
    lib_in, ora_in = leaves(**inputs)
    lib_out = lib_fn(**lib_in)
    ora_out = oracle_fn(**ora_in)
    assert lib_out.shape == ora_out.shape, (lib_out.shape, ora_out.shape)
    torch.testing.assert_close(lib_out.detach().to(F64), ora_out.detach(), rtol=RTOL, atol=ATOL)
    w = rand(*ora_out.shape, seed=123) if ora_out.dim() else torch.tensor(1.0, dtype=F64)
    (lib_out * w).sum().backward()
    (ora_out * w).sum().backward()
    keys = grad_keys if grad_keys is not None else [
        k for k, v in ora_in.items() if torch.is_tensor(v) and v.requires_grad
    ]
    for k in keys:
        assert lib_in[k].grad is not None, f"no gradient reached {k}"
        torch.testing.assert_close(lib_in[k].grad, ora_in[k].grad, rtol=1e-8, atol=1e-10,
                                   msg=lambda m, k=k: f"gradient wrt {k}: {m}")
    return lib_out


# --------------------------------------------------------------------- policies
def policy_cases():
    """(id, policy factory, oracle τ, step)."""
    return [
        ("fixed", lambda: Fixed(0.3), 0.3, None),
        ("cosine", lambda: Cosine(tau_min=0.1, tau_max=1.0, period=200), O.cosine_tau(70), 70),
        ("dystress", lambda: DySTreSS(0.07, 0.2),
         lambda s, pos: O.dystress_tau(s, 0.07, 0.2), None),
        ("dystress_shift", lambda: DySTreSS(0.07, 0.2, shift=0.2),
         lambda s, pos: O.dystress_tau(s, 0.07, 0.2, shift=0.2), None),
        ("posneg_float", lambda: PosNeg(positive=0.1, negative=0.5), O.posneg_tau(0.1, 0.5), None),
        ("posneg_policy", lambda: PosNeg(positive=DySTreSS(0.1, 0.3), negative=Fixed(0.4)),
         O.posneg_tau(lambda s, p: O.dystress_tau(s, 0.1, 0.3), 0.4), None),
    ]


POLICY_IDS = [c[0] for c in policy_cases()]


def policy_case(name):
    return next(c for c in policy_cases() if c[0] == name)


# ------------------------------------------------------------------------ NT-Xent
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("n_ext", [0, 3])
def test_nt_xent_matches_oracle(reduction, tau, n_ext):
    n, d = 5, 4
    inputs = {"z1": rand(n, d, seed=1), "z2": rand(n, d, seed=2)}
    if n_ext:
        inputs["negatives"] = rand(n_ext, d, seed=3)

    def lib(z1, z2, negatives=None):
        return nt_xent(z1, z2, tau, negatives=negatives, reduction=reduction)

    def ora(z1, z2, negatives=None):
        return O.nt_xent(z1, z2, tau, negatives=negatives, reduction=reduction)

    out = compare(lib, ora, **inputs)
    if reduction == "none":
        assert out.shape == (2 * n,)


def test_nt_xent_default_temperature_is_half():
    z1, z2 = rand(4, 3, seed=4), rand(4, 3, seed=5)
    torch.testing.assert_close(nt_xent(z1, z2), O.nt_xent(z1, z2, 0.5), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", POLICY_IDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_nt_xent_with_policy_matches_oracle(case, reduction):
    _, make, tau, step = policy_case(case)
    n, d = 4, 3
    inputs = {"z1": rand(n, d, seed=6), "z2": rand(n, d, seed=7), "negatives": rand(2, d, seed=8)}

    def lib(z1, z2, negatives):
        return nt_xent(z1, z2, make(), negatives=negatives, reduction=reduction, step=step)

    def ora(z1, z2, negatives):
        return O.nt_xent(z1, z2, tau, negatives=negatives, reduction=reduction)

    compare(lib, ora, **inputs)


def test_fixed_policy_equals_float():
    z1, z2 = rand(5, 3, seed=9), rand(5, 3, seed=10)
    torch.testing.assert_close(nt_xent(z1, z2, Fixed(0.2), reduction="none"),
                               nt_xent(z1, z2, 0.2, reduction="none"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_nt_xent_identical_embeddings_is_log_2n_minus_1(n):
    z = torch.ones(n, 4, dtype=F64) * torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    for tau in (0.05, 0.5, 5.0):
        out = nt_xent(z, z.clone(), tau, reduction="none")
        torch.testing.assert_close(out, torch.full((2 * n,), math.log(2 * n - 1), dtype=F64))
        torch.testing.assert_close(nt_xent(z, z.clone(), tau), torch.tensor(math.log(2 * n - 1),
                                                                           dtype=F64))
    # identical external negatives count in the denominator too
    out = nt_xent(z, z.clone(), 0.3, negatives=z[:1].repeat(3, 1) * 7.0)
    torch.testing.assert_close(out, torch.tensor(math.log(2 * n - 1 + 3), dtype=F64))


# ------------------------------------------------------------- Wang & Liu §2
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_wang_liu_identities_similarity_level(tau):
    """∂L/∂s_ii = −(1/τ)Σ_{k≠i}P_ik and ∂L/∂s_ij = (1/τ)P_ij on the similarity-level loss."""
    g = torch.Generator().manual_seed(11)
    s_pos = (torch.rand((), generator=g, dtype=F64) * 2 - 1).requires_grad_(True)
    s_neg = (torch.rand(7, generator=g, dtype=F64) * 2 - 1).requires_grad_(True)
    loss = O.nt_xent_similarity_level(s_pos, list(s_neg), tau)
    gp, gn = torch.autograd.grad(loss, [s_pos, s_neg])
    e_pos, e_neg = math.exp(float(s_pos.detach()) / tau), torch.exp(s_neg.detach() / tau)
    p_neg = e_neg / (e_pos + e_neg.sum())
    torch.testing.assert_close(gn, p_neg / tau, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gp, -p_neg.sum() / tau, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gn.sum(), -gp, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_wang_liu_identities_through_library_gradients(tau):
    """With unit-norm inputs, ∂L_i/∂z_k = G_ik (I − z_k z_kᵀ) z_i for k ≠ i, where
    G_ik = ∂L_i/∂s_ik. Recover G_ik from the library's autograd gradients of its
    per-anchor output and check them against the Wang & Liu formulas."""
    n, d = 4, 5
    z = torch.nn.functional.normalize(rand(2 * n, d, seed=12), dim=1)
    z1 = z[:n].clone().requires_grad_(True)
    z2 = z[n:].clone().requires_grad_(True)
    out = nt_xent(z1, z2, tau, reduction="none")
    s = z @ z.T
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        g1, g2 = torch.autograd.grad(out[i], [z1, z2], retain_graph=True)
        grad = torch.cat([g1, g2])
        others = [k for k in range(2 * n) if k != i]
        denom = sum(math.exp(float(s[i, k]) / tau) for k in others)
        P = {k: math.exp(float(s[i, k]) / tau) / denom for k in others}
        negs = [k for k in others if k != p]
        G = {}
        for k in others:
            direction = z[i] - s[i, k] * z[k]
            G[k] = float(grad[k] @ direction / (direction @ direction))
            # the gradient on z_k lies entirely along the tangent direction
            torch.testing.assert_close(grad[k], G[k] * direction, rtol=1e-8, atol=1e-10)
        for k in negs:
            assert G[k] == pytest.approx(P[k] / tau, rel=1e-8, abs=1e-12)
        assert G[p] == pytest.approx(-sum(P[k] for k in negs) / tau, rel=1e-8, abs=1e-12)
        # total gradient mass on the negatives equals the magnitude on the positive
        assert sum(G[k] for k in negs) == pytest.approx(-G[p], rel=1e-8, abs=1e-12)
        # the anchor's own gradient: Σ_k G_ik (I − z_i z_iᵀ) z_k
        expected_i = sum(G[k] * (z[k] - s[i, k] * z[i]) for k in others)
        torch.testing.assert_close(grad[i], expected_i, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("tau", [0.01, 0.005])
def test_small_tau_limit_is_hardest_negative_triplet(tau):
    """τ·L_i = −s_ip + τ·logsumexp(s/τ) ∈ [max(s_max − s_ip, 0), … + τ log M]."""
    n, d = 6, 4
    z1, z2 = rand(n, d, seed=13), rand(n, d, seed=14)
    out = nt_xent(z1, z2, tau, reduction="none")
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.T
    m = 2 * n - 1
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        s_max = max(float(s[i, k]) for k in range(2 * n) if k not in (i, p))
        target = max(s_max - float(s[i, p]), 0.0)
        err = float(tau * out[i]) - target
        assert -1e-12 <= err <= tau * math.log(m) + 1e-12, (i, err)


def test_large_tau_limit_is_simple_loss():
    """L_i ≈ −((M−1)/(Mτ)) s_ii + (1/(Mτ)) Σ_{k≠i} s_ik + log M with O(1/τ²) error, i.e.
    log M + ((M−1)/(Mτ))·L_simple(λ = 1/(M−1))."""
    n, d = 5, 3
    z1, z2 = rand(n, d, seed=15), rand(n, d, seed=16)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.T
    m = 2 * n - 1
    errors = {}
    for tau in (100.0, 1000.0):
        out = nt_xent(z1, z2, tau, reduction="none")
        simple_out = simple_loss(z1, z2, reduction="none")
        errs = []
        for i in range(2 * n):
            p = (i + n) % (2 * n)
            neg_sum = sum(float(s[i, k]) for k in range(2 * n) if k not in (i, p))
            approx = -((m - 1) / (m * tau)) * float(s[i, p]) + neg_sum / (m * tau) + math.log(m)
            err = abs(float(out[i]) - approx)
            assert err <= 1.0 / tau**2, (tau, i, err)
            via_simple = math.log(m) + (m - 1) / (m * tau) * float(simple_out[i])
            assert abs(float(out[i]) - via_simple) <= 1.0 / tau**2
            errs.append(err)
        errors[tau] = max(errs)
    ratio = errors[100.0] / errors[1000.0]
    assert 50 < ratio < 200, ratio  # second order in 1/τ


# -------------------------------------------------------------- multiview / SupCon
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("v", [2, 3])
def test_multiview_matches_oracle(reduction, v):
    n, d = 4, 3
    views = rand(n, v, d, seed=17)
    compare(lambda views: multiview_nt_xent(views, 0.3, reduction=reduction),
            lambda views: O.supcon(views, labels=torch.arange(n), tau=0.3, reduction=reduction),
            views=views)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multiview_two_views_equals_nt_xent_and_supcon(reduction):
    n, d = 5, 4
    views = rand(n, 2, d, seed=18)
    a = multiview_nt_xent(views, 0.4, reduction=reduction)
    b = nt_xent(views[:, 0], views[:, 1], 0.4, reduction=reduction)
    c = supcon(views, labels=torch.arange(n), temperature=0.4, reduction=reduction)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b, O.nt_xent(views[:, 0], views[:, 1], 0.4, reduction=reduction),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("contrast_mode", ["all", "one"])
@pytest.mark.parametrize("positives", ["labels", "mask", "none"])
def test_supcon_matches_oracle(reduction, variant, contrast_mode, positives):
    n, v, d = 6, 2, 4
    features = rand(n, v, d, seed=19)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    kw = {}
    if positives == "labels":
        kw["labels"] = labels
    elif positives == "mask":  # asymmetric, one anchor sample without any positive
        g = torch.Generator().manual_seed(20)
        mask = (torch.rand(n, n, generator=g) < 0.4).to(F64)
        mask[3] = 0.0
        mask[0, 0] = 1.0
        mask[1, 1] = 0.0
        kw["mask"] = mask

    def lib(features):
        return supcon(features, temperature=0.2, variant=variant, contrast_mode=contrast_mode,
                      reduction=reduction, **kw)

    def ora(features):
        return O.supcon(features, tau=0.2, variant=variant, contrast_mode=contrast_mode,
                        reduction=reduction, **kw)

    out = compare(lib, ora, features=features)
    if reduction == "none":
        assert out.shape == ((n * v,) if contrast_mode == "all" else (n,))


def test_supcon_bool_mask_equals_float_mask():
    features = rand(5, 2, 3, seed=77)
    g = torch.Generator().manual_seed(78)
    mask = torch.rand(5, 5, generator=g) < 0.5
    for variant in ("out", "in"):
        a = supcon(features, mask=mask, variant=variant, reduction="none")
        b = supcon(features, mask=mask.to(F64), variant=variant, reduction="none")
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, O.supcon(features, mask=mask, variant=variant,
                                               reduction="none"), rtol=RTOL, atol=ATOL)


def test_supcon_default_temperature_and_modes():
    features = rand(4, 2, 3, seed=21)
    labels = torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(supcon(features, labels),
                               O.supcon(features, labels, tau=0.1), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(supcon(features), supcon(features, labels=torch.arange(4)),
                               rtol=1e-12, atol=1e-12)
    mask = (labels[:, None] == labels[None, :]).to(F64)
    torch.testing.assert_close(supcon(features, mask=mask), supcon(features, labels=labels),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_base_temperature_scales(variant):
    features = rand(5, 3, 4, seed=22)
    labels = torch.tensor([0, 1, 0, 1, 2])
    for reduction in REDUCTIONS:
        out = supcon(features, labels, temperature=0.1, variant=variant, base_temperature=0.07,
                     reduction=reduction)
        ref = O.supcon(features, labels, tau=0.1, variant=variant, base_temperature=0.07,
                       reduction=reduction)
        torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)


def test_supcon_anchors_without_positives():
    n, d = 5, 3
    features = rand(n, 2, d, seed=23)
    mask = torch.zeros(n, n, dtype=F64)
    mask[0, 1] = mask[1, 0] = 1.0  # only samples 0 and 1 have positives; no self-positives
    out = supcon(features, mask=mask, temperature=0.5, reduction="none")
    assert torch.isfinite(out).all()
    for a in range(2 * n):
        if a % n not in (0, 1):
            assert out[a] == 0
    mean = supcon(features, mask=mask, temperature=0.5)
    torch.testing.assert_close(mean, out[[0, 1, n, n + 1]].mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mean, O.supcon(features, mask=mask, tau=0.5), rtol=RTOL, atol=ATOL)
    # labels all distinct with a single view: no anchor has any positive -> finite, no NaN grad
    feats = rand(4, 1, 3, seed=24).requires_grad_(True)
    loss = supcon(feats, labels=torch.arange(4), temperature=0.5)
    assert torch.isfinite(loss)
    if loss.requires_grad:
        loss.backward()
        assert feats.grad is None or torch.isfinite(feats.grad).all()


@pytest.mark.parametrize("case", ["dystress", "posneg_float", "posneg_policy"])
@pytest.mark.parametrize("variant", ["out", "in"])
def test_supcon_with_policy_matches_oracle(case, variant):
    _, make, tau, step = policy_case(case)
    features = rand(4, 2, 3, seed=25)
    labels = torch.tensor([0, 1, 0, 1])
    compare(lambda features: supcon(features, labels, temperature=make(), variant=variant,
                                    reduction="none", step=step),
            lambda features: O.supcon(features, labels, tau=tau, variant=variant,
                                      reduction="none"),
            features=features)


# --------------------------------------------------------------------------- MoCo
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("supervised", [False, True])
@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
def test_moco_matches_oracle(reduction, supervised, tau):
    n, k, d = 4, 7, 3
    inputs = {"q": rand(n, d, seed=26), "k": rand(n, d, seed=27), "queue": rand(k, d, seed=28)}
    kw = {}
    if supervised:
        kw = {"labels": torch.tensor([0, 1, 2, 0]),
              "queue_labels": torch.tensor([0, 1, 1, 2, 0, 3, 0])}
    compare(lambda q, k, queue: moco_info_nce(q, k, queue, tau, reduction=reduction, **kw),
            lambda q, k, queue: O.moco(q, k, queue, tau, reduction=reduction, **kw), **inputs)


def test_moco_default_temperature_and_in_batch_keys_excluded():
    n, d = 4, 3
    q, k, queue = rand(n, d, seed=29), rand(n, d, seed=30), rand(5, d, seed=31)
    torch.testing.assert_close(moco_info_nce(q, k, queue), O.moco(q, k, queue, 0.2),
                               rtol=RTOL, atol=ATOL)
    # changing the other keys k_j (j != i) does not change anchor i's loss
    k2 = k.clone()
    k2[1:] = rand(n - 1, d, seed=32)
    a = moco_info_nce(q, k, queue, reduction="none")
    b = moco_info_nce(q, k2, queue, reduction="none")
    torch.testing.assert_close(a[0], b[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["dystress", "posneg_float"])
@pytest.mark.parametrize("supervised", [False, True])
def test_moco_with_policy_matches_oracle(case, supervised):
    _, make, tau, step = policy_case(case)
    kw = {}
    if supervised:
        kw = {"labels": torch.tensor([0, 1, 0]), "queue_labels": torch.tensor([1, 0, 2, 0])}
    compare(lambda q, k, queue: moco_info_nce(q, k, queue, make(), reduction="none", step=step,
                                              **kw),
            lambda q, k, queue: O.moco(q, k, queue, tau, reduction="none", **kw),
            q=rand(3, 4, seed=33), k=rand(3, 4, seed=34), queue=rand(4, 4, seed=35))


# ------------------------------------------------------------------ simple / hard
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("lam", [None, 0.3])
@pytest.mark.parametrize("n_ext", [0, 4])
def test_simple_loss_matches_oracle(reduction, lam, n_ext):
    n, d = 5, 3
    inputs = {"z1": rand(n, d, seed=36), "z2": rand(n, d, seed=37)}
    if n_ext:
        inputs["negatives"] = rand(n_ext, d, seed=38)
    compare(lambda z1, z2, negatives=None: simple_loss(z1, z2, lam, negatives=negatives,
                                                       reduction=reduction),
            lambda z1, z2, negatives=None: O.simple(z1, z2, lam, negatives=negatives,
                                                    reduction=reduction),
            **inputs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("top_k", [1, 3, 8])
@pytest.mark.parametrize("n_ext", [0, 3])
def test_hard_simple_loss_matches_oracle(reduction, top_k, n_ext):
    n, d = 5, 4
    inputs = {"z1": rand(n, d, seed=39), "z2": rand(n, d, seed=40)}
    if n_ext:
        inputs["negatives"] = rand(n_ext, d, seed=41)
    compare(lambda z1, z2, negatives=None: hard_simple_loss(
                z1, z2, 0.25, top_k=top_k, negatives=negatives, reduction=reduction),
            lambda z1, z2, negatives=None: O.simple(
                z1, z2, 0.25, negatives=negatives, top_k=top_k, reduction=reduction),
            **inputs)


@pytest.mark.parametrize("top_k", [1, 4])
def test_hard_simple_default_lambda_is_large_tau_limit_of_hard_nt_xent(top_k):
    """lam=None means λ = 1/top_k: then hard_nt_xent(τ) ≈ log(K+1) + K/((K+1)τ)·HardSimple."""
    z1, z2 = rand(5, 3, seed=64), rand(5, 3, seed=65)
    compare(lambda z1, z2: hard_simple_loss(z1, z2, top_k=top_k, reduction="none"),
            lambda z1, z2: O.simple(z1, z2, None, top_k=top_k, reduction="none"), z1=z1, z2=z2)
    hs = hard_simple_loss(z1, z2, top_k=top_k, reduction="none")
    for tau in (100.0, 1000.0):
        hn = hard_nt_xent(z1, z2, tau, top_k=top_k, reduction="none")
        approx = math.log(top_k + 1) + top_k / ((top_k + 1) * tau) * hs
        assert (hn - approx).abs().max() <= 1.0 / tau**2


def test_hard_simple_alpha():
    z1, z2, neg = rand(5, 3, seed=74), rand(5, 3, seed=75), rand(2, 3, seed=76)
    # 2N - 2 + K = 10 negatives; alpha = 0.25 -> ceil(2.5) = 3
    compare(lambda z1, z2, neg: hard_simple_loss(z1, z2, 0.4, alpha=0.25, negatives=neg,
                                                 reduction="none"),
            lambda z1, z2, neg: O.simple(z1, z2, 0.4, negatives=neg, top_k=3, reduction="none"),
            z1=z1, z2=z2, neg=neg)


def test_hard_simple_with_all_negatives_equals_simple():
    z1, z2 = rand(4, 3, seed=42), rand(4, 3, seed=43)
    torch.testing.assert_close(hard_simple_loss(z1, z2, 0.5, top_k=6, reduction="none"),
                               simple_loss(z1, z2, 0.5, reduction="none"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("sel", [{"top_k": 1}, {"top_k": 4}, {"alpha": 0.3}, {"alpha": 1.0}])
@pytest.mark.parametrize("n_ext", [0, 3])
def test_hard_nt_xent_matches_oracle(reduction, tau, sel, n_ext):
    n, d = 5, 4
    inputs = {"z1": rand(n, d, seed=44), "z2": rand(n, d, seed=45)}
    if n_ext:
        inputs["negatives"] = rand(n_ext, d, seed=46)
    compare(lambda z1, z2, negatives=None: hard_nt_xent(z1, z2, tau, negatives=negatives,
                                                        reduction=reduction, **sel),
            lambda z1, z2, negatives=None: O.hard_nt_xent(z1, z2, tau, negatives=negatives,
                                                          reduction=reduction, **sel),
            **inputs)


def test_hard_nt_xent_alpha_rounds_up():
    # 2N-2 = 8 negatives; alpha = 0.3 -> ceil(2.4) = 3 negatives
    z1, z2 = rand(5, 4, seed=47), rand(5, 4, seed=48)
    torch.testing.assert_close(hard_nt_xent(z1, z2, 0.3, alpha=0.3, reduction="none"),
                               hard_nt_xent(z1, z2, 0.3, top_k=3, reduction="none"),
                               rtol=1e-12, atol=1e-12)


def test_hard_nt_xent_with_all_negatives_equals_nt_xent():
    z1, z2, neg = rand(4, 3, seed=49), rand(4, 3, seed=50), rand(2, 3, seed=51)
    for tau in (0.1, 0.7):
        torch.testing.assert_close(
            hard_nt_xent(z1, z2, tau, top_k=8, negatives=neg, reduction="none"),
            nt_xent(z1, z2, tau, negatives=neg, reduction="none"), rtol=1e-10, atol=1e-12)


def test_hard_nt_xent_dropped_negatives_get_zero_gradient():
    n, d, top_k = 5, 4, 2
    z1 = rand(n, d, seed=52).requires_grad_(True)
    z2 = rand(n, d, seed=53).requires_grad_(True)
    out = hard_nt_xent(z1, z2, 0.2, top_k=top_k, reduction="none")
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).detach(), dim=1)
    s = z @ z.T
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        negs = sorted((k for k in range(2 * n) if k not in (i, p)), key=lambda k: -float(s[i, k]))
        kept, dropped = negs[:top_k], negs[top_k:]
        grad = torch.cat(torch.autograd.grad(out[i], [z1, z2], retain_graph=True))
        for k in dropped:
            assert torch.count_nonzero(grad[k]) == 0, (i, k)
        for k in kept:
            assert grad[k].abs().max() > 0


def test_hard_nt_xent_selects_negatives_by_similarity_not_by_logit():
    """With DySTreSS(0.01, 1), s/τ(s) is not monotone in s (0.2/τ(0.2) ≈ 1.9 > 0.9/τ(0.9)
    ≈ 0.92): the top_k negatives are the most similar ones (SPEC §2), not the largest logits."""
    tau = lambda s, p: O.dystress_tau(s, 0.01, 1.0)  # noqa: E731
    for seed in range(5):
        z1, z2 = rand(6, 3, seed=80 + seed), rand(6, 3, seed=90 + seed)
        compare(lambda z1, z2: hard_nt_xent(z1, z2, DySTreSS(0.01, 1.0), top_k=2,
                                            reduction="none"),
                lambda z1, z2: O.hard_nt_xent(z1, z2, tau, top_k=2, reduction="none"),
                z1=z1, z2=z2)


@pytest.mark.parametrize("case", ["dystress", "posneg_float"])
def test_hard_nt_xent_with_policy_matches_oracle(case):
    _, make, tau, step = policy_case(case)
    compare(lambda z1, z2: hard_nt_xent(z1, z2, make(), top_k=3, reduction="none", step=step),
            lambda z1, z2: O.hard_nt_xent(z1, z2, tau, top_k=3, reduction="none"),
            z1=rand(4, 3, seed=54), z2=rand(4, 3, seed=55))


# ----------------------------------------------------------------- BYOL / Wang-Isola
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_byol_matches_oracle_and_stops_gradient(reduction):
    p, z = rand(5, 4, seed=56), rand(5, 4, seed=57)
    compare(lambda p, z: byol_loss(p, z, reduction=reduction),
            lambda p, z: O.byol(p, z, reduction=reduction), grad_keys=["p"], p=p, z=z)
    z_leaf = z.clone().requires_grad_(True)
    loss = byol_loss(p.clone().requires_grad_(True), z_leaf, reduction=reduction)
    loss.sum().backward()
    assert z_leaf.grad is None or torch.count_nonzero(z_leaf.grad) == 0


@pytest.mark.parametrize("alpha", [2, 1, 3])
def test_alignment_loss_matches_oracle(alpha):
    compare(lambda z1, z2: alignment_loss(z1, z2, alpha=alpha),
            lambda z1, z2: O.alignment_loss(z1, z2, alpha),
            z1=rand(6, 4, seed=58), z2=rand(6, 4, seed=59))


@pytest.mark.parametrize("t", [2, 1, 3])
def test_uniformity_loss_matches_oracle(t):
    compare(lambda z: uniformity_loss(z, t=t), lambda z: O.uniformity_loss(z, t),
            z=rand(7, 3, seed=60))


@pytest.mark.parametrize("kw", [{}, {"align_weight": 3.0, "unif_weight": 1.0, "t": 3.0},
                                {"align_weight": 2.0, "unif_weight": 0.5, "alpha": 1.0}])
def test_align_uniform_training_loss_matches_oracle(kw):
    """SPEC §8: w_a·L_align + w_u·(L_unif(z1) + L_unif(z2))/2 (the paper's 3·align + unif(t=3))."""
    fn = LOSSES["align_uniform"].fn
    compare(lambda z1, z2: fn(z1, z2, **kw),
            lambda z1, z2: O.align_uniform(z1, z2, kw.get("alpha", 2), kw.get("t", 2),
                                           kw.get("align_weight", 1.0), kw.get("unif_weight", 1.0)),
            z1=rand(6, 4, seed=117), z2=rand(6, 4, seed=118))


def test_alignment_uniformity_defaults():
    z1, z2 = rand(6, 4, seed=61), rand(6, 4, seed=62)
    torch.testing.assert_close(alignment_loss(z1, z2), O.alignment_loss(z1, z2, 2),
                               rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(uniformity_loss(z1), O.uniformity_loss(z1, 2), rtol=RTOL, atol=ATOL)


# -------------------------------------------------------------------- the registry
def registry_oracle(name, ex, tau):
    """The oracle for each registry entry, evaluated on its example kwargs."""
    if name == "nt_xent":
        return O.nt_xent(ex["z1"], ex["z2"], tau, negatives=ex.get("negatives"))
    if name == "multiview_nt_xent":
        return O.supcon(ex["views"], labels=torch.arange(ex["views"].shape[0]), tau=tau)
    if name in ("supcon", "supcon_in"):
        return O.supcon(ex["features"], labels=ex.get("labels"), mask=ex.get("mask"), tau=tau,
                        variant="in" if name == "supcon_in" else "out",
                        contrast_mode=ex.get("contrast_mode", "all"))
    if name in ("moco", "moco_supervised"):
        return O.moco(ex["q"], ex["k"], ex["queue"], tau, queue_labels=ex.get("queue_labels"),
                      labels=ex.get("labels"))
    if name == "simple":
        return O.simple(ex["z1"], ex["z2"], ex.get("lam"), negatives=ex.get("negatives"))
    if name == "hard_simple":
        return O.simple(ex["z1"], ex["z2"], ex.get("lam"), negatives=ex.get("negatives"),
                        top_k=ex["top_k"])
    if name == "hard_nt_xent":
        return O.hard_nt_xent(ex["z1"], ex["z2"], tau, top_k=ex.get("top_k"),
                              alpha=ex.get("alpha"), negatives=ex.get("negatives"))
    if name == "byol":
        return O.byol(ex["p"], ex["z"])
    if name == "align_uniform":
        return O.align_uniform(ex["z1"], ex["z2"], ex.get("alpha", 2), ex.get("t", 2))
    raise AssertionError(f"no oracle for registry entry {name!r}")


EXPECTED_NAMES = {"nt_xent", "multiview_nt_xent", "supcon", "supcon_in", "moco",
                  "moco_supervised", "simple", "hard_simple", "hard_nt_xent", "byol",
                  "align_uniform"}


def test_registry_names_and_fields():
    assert EXPECTED_NAMES <= set(LOSSES)
    for name, spec in LOSSES.items():
        assert callable(spec.fn), name
        for attr in ("uses_temperature", "needs_labels", "uses_queue"):
            assert isinstance(getattr(spec, attr), bool), (name, attr)
    assert LOSSES["nt_xent"].uses_temperature and not LOSSES["nt_xent"].needs_labels
    assert LOSSES["supcon"].needs_labels and LOSSES["moco_supervised"].needs_labels
    assert LOSSES["moco"].uses_queue and not LOSSES["nt_xent"].uses_queue
    assert not LOSSES["byol"].uses_temperature and not LOSSES["simple"].uses_temperature


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_registry_entries_match_oracle(name):
    spec = LOSSES[name]
    ex = spec.example(5, 4, dtype=F64, generator=torch.Generator().manual_seed(63))
    tau = 0.3
    kwargs = dict(ex, temperature=tau) if spec.uses_temperature else ex
    out = spec.fn(**kwargs)
    torch.testing.assert_close(out.to(F64), registry_oracle(name, ex, tau), rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------- kernel backends
def _backend_cases():
    z1, z2, neg = rand(5, 4, seed=66), rand(5, 4, seed=67), rand(3, 4, seed=68)
    feats = rand(5, 3, 4, seed=69)
    labels = torch.tensor([0, 1, 0, 2, 1])
    q, k, queue = rand(5, 4, seed=70), rand(5, 4, seed=71), rand(6, 4, seed=72)
    qlabels = torch.tensor([0, 1, 2, 0, 1, 1])
    dys = lambda s, p: O.dystress_tau(s)  # noqa: E731
    return {
        "nt_xent": (lambda b: nt_xent(z1, z2, 0.2, negatives=neg, reduction="none", backend=b),
                    lambda: O.nt_xent(z1, z2, 0.2, negatives=neg, reduction="none")),
        "nt_xent_dystress": (lambda b: nt_xent(z1, z2, DySTreSS(), reduction="none", backend=b),
                             lambda: O.nt_xent(z1, z2, dys, reduction="none")),
        "multiview": (lambda b: multiview_nt_xent(feats, 0.3, reduction="none", backend=b),
                      lambda: O.supcon(feats, torch.arange(5), tau=0.3, reduction="none")),
        "supcon_in_one": (lambda b: supcon(feats, labels, temperature=0.3, variant="in",
                                           contrast_mode="one", reduction="none", backend=b),
                          lambda: O.supcon(feats, labels, tau=0.3, variant="in",
                                           contrast_mode="one", reduction="none")),
        "moco_supervised": (lambda b: moco_info_nce(q, k, queue, 0.2, labels=labels,
                                                    queue_labels=qlabels, reduction="none",
                                                    backend=b),
                            lambda: O.moco(q, k, queue, 0.2, labels=labels, queue_labels=qlabels,
                                           reduction="none")),
        "hard_nt_xent": (lambda b: hard_nt_xent(z1, z2, 0.2, top_k=3, negatives=neg,
                                                reduction="none", backend=b),
                         lambda: O.hard_nt_xent(z1, z2, 0.2, top_k=3, negatives=neg,
                                                reduction="none")),
    }


@pytest.mark.parametrize("backend", ["auto", "dense", "tiled"])
@pytest.mark.parametrize("case", sorted(_backend_cases()))
def test_backends_match_oracle(case, backend):
    """The library's kernels ("dense" and the memory-bounded "tiled") give the oracle's values."""
    lib, ora = _backend_cases()[case]
    try:
        out = lib(backend)
    except NotImplementedError as exc:
        pytest.skip(f"backend {backend!r}: {exc}")
    torch.testing.assert_close(out, ora(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_registry_loss_accepts_step(name):
    """The contract: every loss takes the keyword ``step`` (None by default)."""
    spec = LOSSES[name]
    ex = spec.example(4, 3, dtype=F64, generator=torch.Generator().manual_seed(73))
    torch.testing.assert_close(spec.fn(**ex, step=None), spec.fn(**ex))
    torch.testing.assert_close(spec.fn(**ex, step=5), spec.fn(**ex))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)], ids=str)
@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_registry_low_precision_close_to_oracle(name, dtype, tol):
    """float32 / bfloat16 inputs: the value stays close to the float64 oracle evaluated on the
    same (rounded) inputs."""
    spec = LOSSES[name]
    ex64 = spec.example(6, 8, dtype=F64, generator=torch.Generator().manual_seed(79))
    low = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
           for k, v in ex64.items()}
    rounded = {k: v.to(F64) if torch.is_tensor(v) and v.is_floating_point() else v
               for k, v in low.items()}
    out = spec.fn(**low, **({"temperature": 0.3} if spec.uses_temperature else {}))
    assert torch.isfinite(out.float()).all()
    ref = registry_oracle(name, rounded, 0.3)
    assert abs(float(out) - float(ref)) <= tol * max(1.0, abs(float(ref))), (float(out), float(ref))


# --------------------------------------------------------- tiled kernel, tiny tiles
try:  # the memory-bounded kernel's tile geometry can be forced for a block of code
    from contrastlab.ops.tiled import tiled_options
except ImportError:  # pragma: no cover - kernel not there yet
    tiled_options = None

TILES = [{"rows": 1, "cols": 1}, {"rows": 3, "cols": 5}, {"rows": 4, "cols": 2}]
STORE = {"recompute": 0, "store": 1 << 30}


def _tiled_cases():
    n, d = 5, 4
    labels = torch.tensor([0, 1, 0, 2, 1])
    qlabels = torch.tensor([0, 1, 2, 0, 1, 1])
    mask = torch.tensor([[1, 0, 1, 0, 0], [1, 0, 0, 0, 1], [0, 0, 1, 1, 0],
                         [0, 0, 0, 0, 0], [0, 1, 0, 1, 1]], dtype=F64)
    dys = lambda s, p: O.dystress_tau(s)  # noqa: E731
    pair = {"z1": rand(n, d, seed=100), "z2": rand(n, d, seed=101),
            "negatives": rand(3, d, seed=102)}
    feats = {"features": rand(n, 3, d, seed=103)}
    mo = {"q": rand(n, d, seed=104), "k": rand(n, d, seed=105), "queue": rand(6, d, seed=106)}
    return {
        "nt_xent": (pair, lambda z1, z2, negatives, b: nt_xent(
            z1, z2, 0.2, negatives=negatives, reduction="none", backend=b),
            lambda z1, z2, negatives: O.nt_xent(z1, z2, 0.2, negatives=negatives,
                                                reduction="none")),
        "nt_xent_dystress": (pair, lambda z1, z2, negatives, b: nt_xent(
            z1, z2, DySTreSS(), negatives=negatives, reduction="none", backend=b),
            lambda z1, z2, negatives: O.nt_xent(z1, z2, dys, negatives=negatives,
                                                reduction="none")),
        "nt_xent_posneg": (pair, lambda z1, z2, negatives, b: nt_xent(
            z1, z2, PosNeg(positive=0.1, negative=0.5), negatives=negatives, reduction="none",
            backend=b),
            lambda z1, z2, negatives: O.nt_xent(z1, z2, O.posneg_tau(0.1, 0.5),
                                                negatives=negatives, reduction="none")),
        "multiview": (feats, lambda features, b: multiview_nt_xent(
            features, 0.3, reduction="none", backend=b),
            lambda features: O.supcon(features, torch.arange(n), tau=0.3, reduction="none")),
        "supcon_in_labels": (feats, lambda features, b: supcon(
            features, labels, temperature=0.3, variant="in", reduction="none", backend=b),
            lambda features: O.supcon(features, labels, tau=0.3, variant="in",
                                      reduction="none")),
        "supcon_out_mask_one": (feats, lambda features, b: supcon(
            features, mask=mask, temperature=0.3, contrast_mode="one", reduction="none",
            backend=b),
            lambda features: O.supcon(features, mask=mask, tau=0.3, contrast_mode="one",
                                      reduction="none")),
        "supcon_mean_dystress": (feats, lambda features, b: supcon(
            features, labels, temperature=DySTreSS(), backend=b),
            lambda features: O.supcon(features, labels, tau=dys)),
        "moco_supervised": (mo, lambda q, k, queue, b: moco_info_nce(
            q, k, queue, 0.2, labels=labels, queue_labels=qlabels, reduction="none", backend=b),
            lambda q, k, queue: O.moco(q, k, queue, 0.2, labels=labels, queue_labels=qlabels,
                                       reduction="none")),
        "moco_dystress": (mo, lambda q, k, queue, b: moco_info_nce(
            q, k, queue, DySTreSS(), reduction="none", backend=b),
            lambda q, k, queue: O.moco(q, k, queue, dys, reduction="none")),
        "hard_nt_xent": (pair, lambda z1, z2, negatives, b: hard_nt_xent(
            z1, z2, 0.2, top_k=3, negatives=negatives, reduction="none", backend=b),
            lambda z1, z2, negatives: O.hard_nt_xent(z1, z2, 0.2, top_k=3, negatives=negatives,
                                                     reduction="none")),
        "hard_nt_xent_dystress_alpha": (pair, lambda z1, z2, negatives, b: hard_nt_xent(
            z1, z2, DySTreSS(0.01, 1.0), alpha=0.5, negatives=negatives, reduction="none",
            backend=b),
            lambda z1, z2, negatives: O.hard_nt_xent(
                z1, z2, lambda s, p: O.dystress_tau(s, 0.01, 1.0), alpha=0.5,
                negatives=negatives, reduction="none")),
    }


def _need_tiles():
    if tiled_options is None:
        pytest.skip("contrastlab.ops.tiled not available")


@pytest.mark.parametrize("store", sorted(STORE))
@pytest.mark.parametrize("tiles", TILES, ids=lambda t: f"{t['rows']}x{t['cols']}")
@pytest.mark.parametrize("case", sorted(_tiled_cases()))
def test_tiled_kernel_with_tiny_tiles_matches_oracle(case, tiles, store):
    """Many tiles (down to 1×1): values and gradients equal the oracle's, with the exponential
    tiles stored for the backward or recomputed."""
    _need_tiles()
    inputs, lib, ora = _tiled_cases()[case]
    with tiled_options(store_bytes=STORE[store], **tiles):
        compare(lambda **kw: lib(**kw, b="tiled"), ora, **inputs)


@pytest.mark.parametrize("tiles", TILES, ids=lambda t: f"{t['rows']}x{t['cols']}")
def test_tiled_kernel_learnable_and_grad_carrying_pair_tau(tiles):
    """A scalar τ with a gradient (Learnable) and a per-pair τ with a gradient (PosNeg of a
    Learnable): the gradient on log_scale equals the oracle's."""
    _need_tiles()
    z1, z2, neg = rand(5, 4, seed=107), rand(5, 4, seed=108), rand(3, 4, seed=109)
    for make_tau in ("learnable", "posneg_learnable"):
        pol = Learnable(init=0.2)
        policy = pol if make_tau == "learnable" else PosNeg(positive=pol, negative=0.5)
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        with tiled_options(**tiles):
            out = nt_xent(a, b, policy, negatives=neg, reduction="none", backend="tiled")
            w = rand(10, seed=110)
            (out * w).sum().backward()
        ls = torch.tensor(math.log(1 / 0.2), dtype=F64, requires_grad=True)
        oa, ob = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        tau = O.learnable_tau(ls, 0.01)
        if make_tau == "posneg_learnable":
            def tau(s, p, ls=ls):
                return O.learnable_tau(ls, 0.01) if p else 0.5
            ref = _nt_xent_tensor_tau(oa, ob, tau, neg)
        else:
            ref = O.nt_xent(oa, ob, tau, negatives=neg, reduction="none")
        (ref * w).sum().backward()
        torch.testing.assert_close(out.detach().to(F64), ref.detach(), rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(a.grad, oa.grad, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(b.grad, ob.grad, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(pol.log_scale.grad.to(F64).reshape(()), ls.grad, rtol=1e-5,
                                   atol=1e-8)


def _nt_xent_tensor_tau(z1, z2, tau, negatives):
    """The oracle with a τ callable that returns a differentiable tensor (not frozen)."""
    return O.nt_xent(z1, z2, lambda s, p: tau(s, p), negatives=negatives, reduction="none",
                     detach_tau=False)


@pytest.mark.parametrize("tau", [0.01, 0.05])
def test_tiled_kernel_float32_small_tau_across_tiles(tau):
    """Logits up to 1/τ = 100 spread over many tiles: the running log-sum-exp stays exact to
    float32 accuracy against the float64 oracle."""
    _need_tiles()
    z1, z2, neg = rand(6, 5, seed=111), rand(6, 5, seed=112), rand(4, 5, seed=113)
    ref = O.nt_xent(z1, z2, tau, negatives=neg, reduction="none")
    for tiles in TILES:
        for store in STORE.values():
            with tiled_options(store_bytes=store, **tiles):
                out = nt_xent(z1.float(), z2.float(), tau, negatives=neg.float(),
                              reduction="none", backend="tiled")
            torch.testing.assert_close(out.to(F64), ref, rtol=1e-4, atol=1e-4)


def test_tiled_backward_outside_the_options_block():
    """The backward may run after the tiled_options block has closed."""
    _need_tiles()
    inputs, lib, ora = _tiled_cases()["hard_nt_xent"]
    lib_in, ora_in = leaves(**inputs)
    with tiled_options(rows=2, cols=3, store_bytes=0):
        out = lib(**lib_in, b="tiled")
    out.sum().backward()
    ora(**ora_in).sum().backward()
    for k in lib_in:
        torch.testing.assert_close(lib_in[k].grad, ora_in[k].grad, rtol=1e-8, atol=1e-10)


def test_tiled_kernel_bfloat16_small_tau_across_tiles():
    _need_tiles()
    z1, z2, neg = (rand(6, 5, seed=s).to(torch.bfloat16) for s in (114, 115, 116))
    ref = O.nt_xent(z1.double(), z2.double(), 0.01, negatives=neg.double(), reduction="none")
    for tiles in TILES:
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        with tiled_options(store_bytes=0, **tiles):
            out = nt_xent(a, b, 0.01, negatives=neg, reduction="none", backend="tiled")
            out.sum().backward()
        assert torch.isfinite(a.grad.float()).all() and torch.isfinite(b.grad.float()).all()
        assert (out.to(F64) - ref).abs().max() <= 5e-2 * max(1.0, float(ref.abs().max()))
