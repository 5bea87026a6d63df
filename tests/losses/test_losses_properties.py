"""Properties of the loss family: permutation equivariance, scale invariance, L_in ≤ L_out,
monotonicity of the hard loss (hypothesis); and, iterating over the LOSSES registry,
finite values/gradients for τ ∈ {0.01, 0.1, 1, 10} and every temperature policy in
float32 and bfloat16, plus float64 gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contrastlab.losses import (
    LOSSES,
    byol_loss,
    hard_nt_xent,
    hard_simple_loss,
    moco_info_nce,
    multiview_nt_xent,
    nt_xent,
    simple_loss,
    supcon,
)
from contrastlab.temperature import Cosine, DySTreSS, Fixed, Learnable, PosNeg

F64 = torch.float64
PROP = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NON_DIFFERENTIABLE = {"labels", "mask", "queue_labels"}
DETACHED_BY_DESIGN = {("byol", "z")}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=F64)


def close(a, b, rtol=1e-9, atol=1e-10):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def pair_loss_calls(tau):
    """Per-anchor (reduction="none") versions of the two-view losses."""
    return {
        "nt_xent": lambda z1, z2, neg: nt_xent(z1, z2, tau, negatives=neg, reduction="none"),
        "simple": lambda z1, z2, neg: simple_loss(z1, z2, negatives=neg, reduction="none"),
        "hard_simple": lambda z1, z2, neg: hard_simple_loss(z1, z2, 0.3, top_k=2, negatives=neg,
                                                            reduction="none"),
        "hard_nt_xent": lambda z1, z2, neg: hard_nt_xent(z1, z2, tau, top_k=2, negatives=neg,
                                                         reduction="none"),
    }


PAIR_LOSSES = sorted(pair_loss_calls(0.5))
sizes = st.tuples(st.integers(2, 6), st.integers(2, 5))
seeds = st.integers(0, 2**31 - 1)
taus = st.floats(0.05, 2.0)


# --------------------------------------------------------- permutation equivariance
@pytest.mark.parametrize("name", PAIR_LOSSES)
@PROP
@given(nd=sizes, seed=seeds, tau=taus, with_neg=st.booleans())
def test_pair_losses_permutation_equivariant(name, nd, seed, tau, with_neg):
    n, d = nd
    g = gen(seed)
    z1, z2 = randn(g, n, d), randn(g, n, d)
    neg = randn(g, 3, d) if with_neg else None
    perm = torch.randperm(n, generator=g)
    fn = pair_loss_calls(tau)[name]
    out = fn(z1, z2, neg)
    out_p = fn(z1[perm], z2[perm], neg)
    close(out_p, torch.cat([out[:n][perm], out[n:][perm]]))
    if with_neg:  # the order of external negatives is irrelevant
        close(fn(z1, z2, neg.flip(0)), out)


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("contrast_mode", ["all", "one"])
@PROP
@given(nd=sizes, v=st.integers(1, 3), seed=seeds, tau=taus)
def test_supcon_permutation_equivariant(variant, contrast_mode, nd, v, seed, tau):
    n, d = nd
    g = gen(seed)
    feats = randn(g, n, v, d)
    labels = torch.randint(0, 3, (n,), generator=g)
    perm = torch.randperm(n, generator=g)
    kw = {"temperature": tau, "variant": variant, "contrast_mode": contrast_mode,
          "reduction": "none"}
    out = supcon(feats, labels, **kw)
    out_p = supcon(feats[perm], labels[perm], **kw)
    n_anchor_views = v if contrast_mode == "all" else 1
    expected = torch.cat([out[w * n:(w + 1) * n][perm] for w in range(n_anchor_views)])
    close(out_p, expected)
    # the same with the equivalent explicit mask (permuted on both axes)
    mask = (labels[:, None] == labels[None, :]).to(F64)
    close(supcon(feats[perm], mask=mask[perm][:, perm], **kw), expected)


@PROP
@given(nd=sizes, v=st.integers(2, 3), seed=seeds, tau=taus)
def test_multiview_permutation_equivariant(nd, v, seed, tau):
    n, d = nd
    g = gen(seed)
    views = randn(g, n, v, d)
    perm = torch.randperm(n, generator=g)
    out = multiview_nt_xent(views, tau, reduction="none")
    out_p = multiview_nt_xent(views[perm], tau, reduction="none")
    close(out_p, torch.cat([out[w * n:(w + 1) * n][perm] for w in range(v)]))


@PROP
@given(nd=sizes, kq=st.integers(1, 6), seed=seeds, tau=taus, supervised=st.booleans())
def test_moco_permutation_equivariant(nd, kq, seed, tau, supervised):
    n, d = nd
    g = gen(seed)
    q, k, queue = randn(g, n, d), randn(g, n, d), randn(g, kq, d)
    kw, kw_p, kw_q = {}, {}, {}
    perm = torch.randperm(n, generator=g)
    qperm = torch.randperm(kq, generator=g)
    if supervised:
        labels = torch.randint(0, 3, (n,), generator=g)
        qlabels = torch.randint(0, 3, (kq,), generator=g)
        kw = {"labels": labels, "queue_labels": qlabels}
        kw_p = {"labels": labels[perm], "queue_labels": qlabels}
        kw_q = {"labels": labels, "queue_labels": qlabels[qperm]}
    out = moco_info_nce(q, k, queue, tau, reduction="none", **kw)
    close(moco_info_nce(q[perm], k[perm], queue, tau, reduction="none", **kw_p), out[perm])
    close(moco_info_nce(q, k, queue[qperm], tau, reduction="none", **kw_q), out)


@PROP
@given(nd=sizes, seed=seeds)
def test_byol_permutation_equivariant(nd, seed):
    n, d = nd
    g = gen(seed)
    p, z = randn(g, n, d), randn(g, n, d)
    perm = torch.randperm(n, generator=g)
    close(byol_loss(p[perm], z[perm], reduction="none"), byol_loss(p, z, reduction="none")[perm])


# ------------------------------------------------------------------ scale invariance
scales = st.floats(-6.0, 6.0)  # log scale factors


def row_scales(g, n, lo_hi):
    lo, hi = lo_hi
    e = torch.empty(n, 1, dtype=F64).uniform_(min(lo, hi), max(lo, hi) + 1e-3, generator=g)
    return torch.exp(e)


@pytest.mark.parametrize("name", PAIR_LOSSES)
@PROP
@given(nd=sizes, seed=seeds, tau=taus, c=st.tuples(scales, scales))
def test_pair_losses_scale_invariant(name, nd, seed, tau, c):
    n, d = nd
    g = gen(seed)
    z1, z2, neg = randn(g, n, d), randn(g, n, d), randn(g, 2, d)
    fn = pair_loss_calls(tau)[name]
    out = fn(z1, z2, neg)
    # a global positive factor and independent positive per-row factors
    close(fn(z1 * math.exp(c[0]), z2 * math.exp(c[1]), neg * math.exp(c[0])), out)
    close(fn(z1 * row_scales(g, n, c), z2 * row_scales(g, n, c), neg * row_scales(g, 2, c)), out)


@PROP
@given(nd=sizes, seed=seeds, tau=taus, c=st.tuples(scales, scales))
def test_supcon_moco_byol_scale_invariant(nd, seed, tau, c):
    n, d = nd
    g = gen(seed)
    feats = randn(g, n, 2, d)
    labels = torch.randint(0, 2, (n,), generator=g)
    s = torch.exp(torch.empty(n, 2, 1, dtype=F64).uniform_(min(c), max(c) + 1e-3, generator=g))
    close(supcon(feats * s, labels, temperature=tau, reduction="none"),
          supcon(feats, labels, temperature=tau, reduction="none"))
    close(multiview_nt_xent(feats * s, tau, reduction="none"),
          multiview_nt_xent(feats, tau, reduction="none"))
    q, k, queue = randn(g, n, d), randn(g, n, d), randn(g, 4, d)
    close(moco_info_nce(q * row_scales(g, n, c), k * math.exp(c[1]), queue * row_scales(g, 4, c),
                        tau, reduction="none"),
          moco_info_nce(q, k, queue, tau, reduction="none"))
    close(byol_loss(q * row_scales(g, n, c), k * row_scales(g, n, c), reduction="none"),
          byol_loss(q, k, reduction="none"))


# --------------------------------------------------------------------- L_in ≤ L_out
@pytest.mark.parametrize("contrast_mode", ["all", "one"])
@PROP
@given(nd=sizes, v=st.integers(1, 3), seed=seeds, tau=taus, n_classes=st.integers(1, 4))
def test_supcon_l_in_le_l_out(contrast_mode, nd, v, seed, tau, n_classes):
    n, d = nd
    g = gen(seed)
    feats = randn(g, n, v, d)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    kw = {"temperature": tau, "contrast_mode": contrast_mode, "reduction": "none"}
    l_in = supcon(feats, labels, variant="in", **kw)
    l_out = supcon(feats, labels, variant="out", **kw)
    assert l_in.shape == l_out.shape
    assert torch.all(l_in <= l_out + 1e-12), (l_in, l_out)
    # equality when every anchor has exactly one positive (V = 2, distinct labels)
    if v == 2:
        ids = torch.arange(n)
        close(supcon(feats, ids, variant="in", **kw), supcon(feats, ids, variant="out", **kw))


@PROP
@given(nd=sizes, seed=seeds, tau=taus)
def test_hard_nt_xent_monotone_in_top_k(nd, seed, tau):
    n, d = nd
    g = gen(seed)
    z1, z2 = randn(g, n, d), randn(g, n, d)
    n_neg = 2 * n - 2
    prev = None
    for k in range(1, n_neg + 1):
        cur = hard_nt_xent(z1, z2, tau, top_k=k, reduction="none")
        if prev is not None:
            assert torch.all(prev <= cur + 1e-12)
        prev = cur
    close(prev, nt_xent(z1, z2, tau, reduction="none"))


# ---------------------------------------------------------------- registry iteration
def example(name, n, d, dtype, seed):
    return LOSSES[name].example(n, d, dtype=dtype, generator=gen(seed))


def as_leaves(name, ex):
    out, grad_keys = {}, []
    for k, v in ex.items():
        if torch.is_tensor(v) and v.is_floating_point() and k not in NON_DIFFERENTIABLE:
            out[k] = v.detach().clone().requires_grad_(True)
            if (name, k) not in DETACHED_BY_DESIGN:
                grad_keys.append(k)
        else:
            out[k] = v
    return out, grad_keys


def check_finite_with_grads(name, inputs, grad_keys, out):
    assert out.dim() == 0, (name, out.shape)
    assert torch.isfinite(out.detach().float()).all(), (name, out)
    out.backward()
    for k in grad_keys:
        grad = inputs[k].grad
        assert grad is not None, f"{name}: no gradient reached {k}"
        assert torch.isfinite(grad.float()).all(), f"{name}: non-finite gradient wrt {k}"


REGISTRY = sorted(LOSSES)
DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", REGISTRY)
def test_registry_finite_over_temperatures(name, dtype):
    spec = LOSSES[name]
    for tau in ([0.01, 0.1, 1.0, 10.0] if spec.uses_temperature else [None]):
        inputs, grad_keys = as_leaves(name, example(name, 8, 16, dtype, seed=1))
        extra = {"temperature": tau} if tau is not None else {}
        out = spec.fn(**inputs, **extra)
        check_finite_with_grads(f"{name} τ={tau}", inputs, grad_keys, out)
    # bad-scale inputs: large and tiny raw norms are normalised away
    for scale in (1e-3, 1e3):
        ex = {k: (v * scale if torch.is_tensor(v) and v.is_floating_point()
                  and k not in NON_DIFFERENTIABLE else v)
              for k, v in example(name, 8, 16, dtype, seed=2).items()}
        inputs, grad_keys = as_leaves(name, ex)
        extra = {"temperature": 0.1} if spec.uses_temperature else {}
        out = spec.fn(**inputs, **extra)
        check_finite_with_grads(f"{name} scale={scale}", inputs, grad_keys, out)


def policies():
    return {
        "fixed": Fixed(0.1),
        "cosine": Cosine(tau_min=0.01, tau_max=10.0, period=100),
        "learnable": Learnable(),
        "dystress": DySTreSS(),
        "dystress_shift": DySTreSS(shift=0.2),
        "posneg": PosNeg(positive=0.01, negative=10.0),
        "posneg_policy": PosNeg(positive=DySTreSS(), negative=Fixed(1.0)),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("policy", sorted(policies()))
@pytest.mark.parametrize("name", [n for n in REGISTRY if LOSSES[n].uses_temperature])
def test_registry_finite_with_policies(name, policy, dtype):
    for step in (0, 37, 100):
        pol = policies()[policy]
        inputs, grad_keys = as_leaves(name, example(name, 6, 8, dtype, seed=3))
        out = LOSSES[name].fn(**inputs, temperature=pol, step=step)
        check_finite_with_grads(f"{name}/{policy}", inputs, grad_keys, out)
        if policy == "learnable":
            assert pol.log_scale.grad is not None and torch.isfinite(pol.log_scale.grad).all()
            assert pol.log_scale.grad.abs().sum() > 0


def no_ties(ex, gap=1e-4):
    """All pairwise cosine similarities among the embedding rows are separated by > gap."""
    rows = [v.reshape(-1, v.shape[-1]) for k, v in ex.items()
            if torch.is_tensor(v) and v.is_floating_point() and k not in NON_DIFFERENTIABLE]
    if len({r.shape[-1] for r in rows}) != 1:
        return True
    z = torch.nn.functional.normalize(torch.cat(rows), dim=1)
    s = (z @ z.T)[torch.triu_indices(len(z), len(z), 1).unbind()]
    diffs = s.sort().values.diff()
    return bool(diffs.min() > gap) if diffs.numel() else True


@pytest.mark.parametrize("name", REGISTRY)
def test_registry_gradcheck_float64(name):
    spec = LOSSES[name]
    for seed in range(50):
        ex = example(name, 4, 3, F64, seed=seed)
        if no_ties(ex):
            break
    else:
        pytest.fail("could not draw an example without near-ties")
    inputs, grad_keys = as_leaves(name, ex)
    assert grad_keys, name
    extra = {"temperature": 0.5} if spec.uses_temperature else {}

    def f(*tensors):
        kw = dict(inputs)
        kw.update(zip(grad_keys, tensors, strict=True))
        return spec.fn(**kw, **extra)

    tensors = tuple(inputs[k].detach().clone().requires_grad_(True) for k in grad_keys)
    # backend="auto" may keep the forward's exp tiles for the first backward and recompute them
    # in a repeated one: the two agree to ~1e-16, which gradcheck's reentrancy check must allow.
    nondet = 1e-12
    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-6, rtol=1e-5, nondet_tol=nondet)
    # and "none" reduction / per-anchor outputs where the function supports it
    if "reduction" in _params(spec.fn):
        def g(*tensors):
            kw = dict(inputs)
            kw.update(zip(grad_keys, tensors, strict=True))
            return spec.fn(**kw, **extra, reduction="none")

        assert torch.autograd.gradcheck(g, tensors, eps=1e-6, atol=1e-6, rtol=1e-5, nondet_tol=nondet)


def _params(fn):
    import inspect

    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def test_alpha_keeps_the_exact_share_of_negatives() -> None:
    from contrastlab.losses._common import resolve_top_k

    # 0.07 · 100 is 7.000000000000001 in floating point: the top 7%, not 8
    assert resolve_top_k(None, 0.07, 100, required=True) == 7
    assert resolve_top_k(None, 0.0819, 510, required=True) == 42  # ceil(41.77)
    assert resolve_top_k(None, 1e-6, 100, required=True) == 1


def test_hard_simple_keeps_no_similarity_sized_tensor_for_backward() -> None:
    from contrastlab.losses import hard_simple_loss

    z1 = torch.nn.functional.normalize(torch.randn(256, 8), dim=1).requires_grad_(True)
    z2 = torch.nn.functional.normalize(torch.randn(256, 8), dim=1)
    saved: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = hard_simple_loss(z1, z2, top_k=4)
    loss.backward()
    assert max(math.prod(s) for s in saved) < 512 * 512  # no (2N, 2N) mask or matrix
