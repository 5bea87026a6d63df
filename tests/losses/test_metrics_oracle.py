"""Metrics (SPEC §2, §8; RankMe) against float64 row-loop oracles and closed forms, on N up
to a few thousand, and a check that no N×N tensor is materialised."""

from __future__ import annotations

import math

import numpy as np
import oracles as O
import pytest
import torch

from contrastlab.metrics import alignment, effective_rank, hardness, tolerance, uniformity

F64 = torch.float64
HARDNESS_FIELDS = ("entropy", "effective_negatives", "max_weight", "positive_share")
# summary() keys for the means of the per-anchor fields
SUMMARY_KEYS = {"entropy": "hardness_entropy", "effective_negatives": "effective_negatives",
                "max_weight": "max_negative_weight", "positive_share": "positive_share"}
# The metrics are diagnostics computed in float32 even for float64 input: compare at float32
# accuracy (the losses are compared at float64 accuracy elsewhere).
REL = 1e-6


def close32(a, b):
    torch.testing.assert_close(a.to(F64), b, rtol=1e-5, atol=1e-6)


def rand(*shape, seed, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def unit(z):
    return torch.nn.functional.normalize(z, dim=1)


def orthonormal(n, d, seed):
    q, _ = torch.linalg.qr(rand(d, n, seed=seed))
    return q.T.contiguous()  # n orthonormal rows in R^d


# ------------------------------------------------------------------ against the oracle
@pytest.mark.parametrize("alpha", [2, 1])
def test_alignment_matches_oracle(alpha):
    z1, z2 = rand(3000, 16, seed=0), rand(3000, 16, seed=1)  # raw: the metric normalises
    z2 = z1 + 0.5 * z2
    got = alignment(z1, z2, alpha=alpha)
    assert isinstance(got, float)
    assert got == pytest.approx(O.metric_alignment(z1, z2, alpha), rel=REL)
    assert alignment(z1, z2) == pytest.approx(O.metric_alignment(z1, z2, 2), rel=REL)


@pytest.mark.parametrize("t", [2, 1])
def test_uniformity_matches_oracle(t):
    z = unit(rand(2500, 8, seed=2))
    got = uniformity(z, t=t)
    assert isinstance(got, float)
    assert got == pytest.approx(O.metric_uniformity(z, t), rel=REL)
    assert uniformity(z) == pytest.approx(O.metric_uniformity(z, 2), rel=REL)
    # raw inputs are normalised: positive row scales do not matter
    scaled = z * torch.exp(rand(2500, 1, seed=30))
    assert uniformity(scaled, t=t) == pytest.approx(O.metric_uniformity(z, t), rel=REL)


def test_uniformity_of_concentrated_embeddings_is_smaller():
    spread = unit(rand(500, 8, seed=3))
    tight = unit(rand(500, 8, seed=3) * 0.1 + torch.ones(8, dtype=F64))
    assert uniformity(tight) < uniformity(spread)
    # near-collapsed: absolute float32 accuracy (‖ẑ_i − ẑ_j‖² is tiny)
    assert uniformity(tight) == pytest.approx(O.metric_uniformity(tight), abs=1e-6)


def test_tolerance_matches_oracle():
    z = rand(3000, 12, seed=4)  # raw: cosine similarity normalises
    labels = torch.randint(0, 10, (3000,), generator=torch.Generator().manual_seed(5))
    got = tolerance(z, labels)
    assert isinstance(got, float)
    assert got == pytest.approx(O.metric_tolerance(z, labels), rel=REL, abs=1e-12)
    # pooled over pairs (not a mean of per-class means): unbalanced classes
    labels2 = torch.cat([torch.zeros(2900, dtype=torch.long), torch.arange(1, 101) % 3 + 1])
    z2 = z + torch.where(labels2[:, None] == 0, 1.0, -1.0) * torch.ones(12, dtype=F64)
    assert tolerance(z2, labels2) == pytest.approx(O.metric_tolerance(z2, labels2), rel=REL)
    # uint8 labels (as read from IDX files) and sparse class ids give the same value
    assert tolerance(z, labels.to(torch.uint8)) == pytest.approx(got, rel=1e-12)
    assert tolerance(z, labels * 10**9) == pytest.approx(got, rel=1e-12)


def test_metrics_refuse_non_finite_temperatures():
    z = rand(6, 3, seed=1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="t must be a finite number > 0"):
            uniformity(z, t=bad)
        with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
            hardness(z[:3], z[3:], bad)


@pytest.mark.parametrize("shape", [(3000, 32), (500, 64), (40, 200)])
def test_effective_rank_matches_oracle(shape):
    n, d = shape
    z = unit(rand(n, d, seed=6) * torch.linspace(0.1, 3.0, d, dtype=F64))  # anisotropic
    got = effective_rank(z)
    assert isinstance(got, float)
    assert got == pytest.approx(O.metric_effective_rank(z), rel=1e-5)
    assert 1.0 <= got <= min(n, d) + 1e-6


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_hardness_matches_oracle(tau):
    n, d = 1500, 16
    z1 = rand(n, d, seed=7)
    z2 = z1 + 0.8 * rand(n, d, seed=8)
    res = hardness(z1, z2, tau)
    ref = O.metric_hardness(z1, z2, tau)
    for field in HARDNESS_FIELDS:
        got = getattr(res, field)
        assert torch.is_tensor(got) and got.shape == (n,), field
        np.testing.assert_allclose(got.detach().to(F64).numpy(), ref[field], rtol=1e-5,
                                   atol=1e-9, err_msg=field)
    summary = res.summary()
    for field, key in SUMMARY_KEYS.items():
        assert isinstance(summary[key], float), key
        assert summary[key] == pytest.approx(float(ref[field].mean()), rel=REL), key
    assert summary["effective_negatives_frac"] == pytest.approx(
        float(ref["effective_negatives"].mean()) / (2 * n - 2), rel=REL)
    assert res.n_negatives == 2 * n - 2


def test_hardness_float32_entropy_monotone_and_policy():
    n, d = 600, 8
    z1, z2 = rand(n, d, seed=9, dtype=torch.float32), rand(n, d, seed=10, dtype=torch.float32)
    res = hardness(z1, z2, 0.2)
    ref = O.metric_hardness(z1, z2, 0.2)
    for field in HARDNESS_FIELDS:
        np.testing.assert_allclose(getattr(res, field).detach().to(F64).numpy(), ref[field],
                                   rtol=2e-4, atol=1e-6, err_msg=field)
    # entropy falls as τ falls (Wang & Liu): mean over anchors
    ents = [hardness(z1, z2, t).summary()["hardness_entropy"] for t in (0.05, 0.2, 1.0, 5.0)]
    assert ents == sorted(ents)
    assert ents[-1] <= math.log(2 * n - 2) + 1e-6
    # a temperature policy object is accepted like a float
    from contrastlab.temperature import Fixed

    fixed = hardness(z1, z2, Fixed(0.2))
    for field in HARDNESS_FIELDS:
        torch.testing.assert_close(getattr(fixed, field), getattr(res, field))


def _policy_cases():
    from contrastlab.temperature import Cosine, DySTreSS, PosNeg

    return {
        "dystress": (DySTreSS(0.05, 0.5), None, lambda s, p: O.dystress_tau(s, 0.05, 0.5)),
        "posneg": (PosNeg(positive=0.1, negative=0.5), None, O.posneg_tau(0.1, 0.5)),
        "cosine": (Cosine(tau_min=0.1, tau_max=1.0, period=10), 3, O.cosine_tau(3, 0.1, 1.0, 10)),
    }


@pytest.mark.parametrize("case", ["dystress", "posneg", "cosine"])
def test_hardness_with_policies_matches_oracle(case):
    pol, step, tau = _policy_cases()[case]
    z1 = rand(300, 6, seed=31)
    z2 = z1 + rand(300, 6, seed=32)
    res = hardness(z1, z2, pol, step=step)
    ref = O.metric_hardness(z1, z2, tau)
    for field in HARDNESS_FIELDS:
        np.testing.assert_allclose(getattr(res, field).detach().to(F64).numpy(), ref[field],
                                   rtol=1e-5, atol=1e-9, err_msg=field)


# ---------------------------------------------------------------------- closed forms
def test_orthonormal_embeddings():
    q = orthonormal(16, 16, seed=11)
    for t in (2, 1, 3):  # ‖z_i − z_j‖² = 2 for every pair → −L_unif = 2t
        assert uniformity(q, t=t) == pytest.approx(2 * t, rel=REL)
    assert uniformity(q) == pytest.approx(4.0, rel=REL)
    assert alignment(q, q) == pytest.approx(0.0, abs=1e-6)
    shifted = torch.roll(q, 1, dims=0)
    assert alignment(q, shifted) == pytest.approx(2.0, rel=REL)
    assert alignment(q, shifted, alpha=1) == pytest.approx(math.sqrt(2), rel=REL)
    assert effective_rank(q) == pytest.approx(16.0, rel=1e-5)
    assert effective_rank(q[:5]) == pytest.approx(5.0, rel=1e-5)
    assert tolerance(q, torch.arange(16) % 4) == pytest.approx(0.0, abs=1e-6)
    # hardness: all similarities are 0 → uniform weights over the 2N−2 = 14 negatives
    res = hardness(q[:8], q[8:], 0.3)
    close32(res.entropy.to(F64), torch.full((8,), math.log(14), dtype=F64))
    close32(res.effective_negatives.to(F64), torch.full((8,), 14.0, dtype=F64))
    close32(res.max_weight.to(F64), torch.full((8,), 1 / 14, dtype=F64))
    close32(res.positive_share.to(F64), torch.full((8,), 1 / 15, dtype=F64))


def test_identical_embeddings():
    n = 50
    z = rand(1, 8, seed=12).repeat(n, 1) * torch.linspace(0.5, 2.0, n, dtype=F64)[:, None]
    assert uniformity(z) == pytest.approx(0.0, abs=1e-6)
    assert tolerance(z, torch.arange(n) % 3) == pytest.approx(1.0, rel=REL)
    assert effective_rank(unit(z)) == pytest.approx(1.0, rel=1e-5)
    assert alignment(z, z.flip(0)) == pytest.approx(0.0, abs=1e-6)
    res = hardness(z, z.clone(), 0.5)
    close32(res.entropy.to(F64), torch.full((n,), math.log(2 * n - 2),
                                                               dtype=F64))
    close32(res.positive_share.to(F64), torch.full((n,), 1 / (2 * n - 1),
                                                                      dtype=F64))
    close32(res.max_weight.to(F64), torch.full((n,), 1 / (2 * n - 2),
                                                                  dtype=F64))


@pytest.mark.parametrize("t", [2, 1])
def test_two_antipodal_clusters(t):
    n = 40  # n points at u, n at −u
    u = unit(rand(1, 6, seed=13))
    z = torch.cat([u.repeat(n, 1), -u.repeat(n, 1)])
    pairs = 2 * n * (2 * n - 1) / 2
    same = 2 * (n * (n - 1) / 2)  # distance 0
    cross = n * n  # distance² 4
    expected = -math.log((same + cross * math.exp(-4 * t)) / pairs)
    assert uniformity(z, t=t) == pytest.approx(expected, rel=REL)
    assert uniformity(z, t=t) == pytest.approx(O.metric_uniformity(z, t), rel=REL)
    clusters = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    assert tolerance(z, clusters) == pytest.approx(1.0, rel=REL)
    assert tolerance(z, torch.zeros(2 * n, dtype=torch.long)) == pytest.approx(
        -1 / (2 * n - 1), rel=REL)
    assert effective_rank(z) == pytest.approx(1.0, rel=1e-5)
    assert alignment(z[:n], z[n:]) == pytest.approx(4.0, rel=REL)


# ------------------------------------------------------------------------- chunking
def _largest_allocation(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((evt.cpu_memory_usage for evt in prof.events()), default=0)


def test_metrics_do_not_materialise_n_by_n():
    n, d = 5000, 2
    z1, z2 = rand(n, d, seed=14, dtype=torch.float32), rand(n, d, seed=15, dtype=torch.float32)
    labels = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(16))
    full_matrix = n * n * 4
    # sanity: the probe sees an N×N allocation when there is one
    assert _largest_allocation(lambda: z1 @ z2.T) >= full_matrix
    for name, fn in {
        "uniformity": lambda: uniformity(z1),
        "tolerance": lambda: tolerance(z1, labels),
        "hardness": lambda: hardness(z1, z2, 0.5),
    }.items():
        assert _largest_allocation(fn) < full_matrix / 2, name
