"""The kNN's certified bf16 prefilter: same neighbours and votes as the fp32 product, a bound
that holds on every pair, and the fp32 fallback for the queries it cannot certify."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.eval import knn as knn_mod
from contrastlab.eval import knn_accuracy, knn_classify, knn_scores


def _features(n: int, m: int, d: int, c: int, seed: int, spread: float) -> tuple[Tensor, ...]:
    """Rectified class clusters, like a CNN's pooled features: (n, d), (n,), (m, d), (m,)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g)
    ytr = torch.randint(0, c, (n,), generator=g)
    yte = torch.randint(0, c, (m,), generator=g)
    xtr = (centers[ytr] + spread * torch.randn(n, d, generator=g)).relu()
    xte = (centers[yte] + spread * torch.randn(m, d, generator=g)).relu()
    return xtr, ytr, xte, yte


@pytest.mark.parametrize(("d", "k", "t", "chunk"), [(64, 200, 0.1, 1024), (300, 20, 0.02, 37)])
def test_prefilter_gives_the_fp32_votes(d: int, k: int, t: float, chunk: int) -> None:
    xtr, ytr, xte, yte = _features(6000, 300, d, 10, seed=d, spread=1.2)
    exact = knn_scores(xtr, ytr, xte, k=k, t=t, chunk=chunk, prefilter=False)
    fast = knn_scores(xtr, ytr, xte, k=k, t=t, chunk=chunk, prefilter=True)
    torch.testing.assert_close(fast, exact, rtol=1e-5, atol=0.0)
    assert torch.equal(
        knn_classify(xtr, ytr, xte, k=k, t=t, prefilter=True),
        knn_classify(xtr, ytr, xte, k=k, t=t, prefilter=False),
    )
    assert knn_accuracy(xtr, ytr, xte, yte, k=k, prefilter=True) == knn_accuracy(
        xtr, ytr, xte, yte, k=k, prefilter=False
    )


def test_prefilter_certifies_most_queries_and_finds_the_fp32_neighbours() -> None:
    xtr, _, xte, _ = _features(8000, 400, 128, 10, seed=1, spread=1.0)
    bank = F.normalize(xtr, dim=1)
    q = F.normalize(xte, dim=1)
    search = knn_mod._Bf16Bank(bank, candidates=400, chunk=128)
    s, i = search.top(q, 200)
    ref_s, ref_i = torch.mm(q, bank.T).topk(200, dim=1)
    assert search.searched == 400
    assert search.certified >= 0.9 * 400  # the bound is tight enough to be useful
    assert not search.gave_up
    torch.testing.assert_close(s, ref_s, rtol=0.0, atol=1e-6)
    assert torch.equal(i.sort(dim=1).values, ref_i.sort(dim=1).values)


@pytest.mark.parametrize("d", [3, 257, 2048])
def test_bound_holds_on_every_pair(d: int) -> None:
    """exact(q·b) ≤ bound(v) for every query and bank row, v being the row's bf16 value."""
    g = torch.Generator().manual_seed(d)
    # mixed signs, magnitudes spread over six orders, near-duplicates of the queries in the bank
    bank = (
        torch.randn(3000, d, generator=g) * torch.logspace(-3, 3, d)[torch.randperm(d, generator=g)]
    )
    q = torch.randn(64, d, generator=g)
    bank[:64] = q + 1e-3 * torch.randn(64, d, generator=g)
    bank, q = F.normalize(bank, dim=1), F.normalize(q, dim=1)
    search = knn_mod._Bf16Bank(bank, candidates=8, chunk=64)
    q_lo = torch.cat([q, -torch.ones(64, 1)], dim=1).bfloat16()
    v = torch.mm(q_lo, search.lo.T).double()  # the values the search ranks by
    exact = torch.mm(q.double(), bank.double().T)
    assert (exact <= search._bound(q, q_lo, v)).all()
    # and the bound is not vacuous: within 0.02 of the similarity for unit-norm 2048-d rows
    assert (search._bound(q, q_lo, v) - exact).max() < 0.02


def test_uncertified_queries_fall_back_to_the_fp32_search() -> None:
    """A bank of near-ties around the k-th neighbour defeats the certificate; the answer must
    still be the fp32 product's."""
    g = torch.Generator().manual_seed(0)
    base = F.normalize(torch.randn(1, 32, generator=g), dim=1)
    # 2000 rows whose similarities to the queries differ by ~1e-4: far above fp32 rounding, far
    # below what bf16 can resolve
    bank = base + 1e-2 * torch.randn(2000, 32, generator=g)
    labels = torch.randint(0, 3, (2000,), generator=g)
    q = base + 1e-2 * torch.randn(5, 32, generator=g)
    nb, nq = F.normalize(bank, dim=1), F.normalize(q, dim=1)
    search = knn_mod._Bf16Bank(nb, candidates=20, chunk=8)
    s, i = search.top(nq, 10)
    assert search.certified < search.searched
    ref_s, ref_i = torch.mm(nq, nb.T).topk(10, dim=1)
    assert torch.equal(i, ref_i)
    torch.testing.assert_close(s, ref_s, rtol=0.0, atol=1e-6)
    # too few certified to pay for the bf16 product: the next queries skip it
    assert search.gave_up
    _, i2 = search.top(nq, 10)
    assert search.searched == 5  # not prefiltered again
    assert torch.equal(i2, ref_i)
    assert torch.equal(
        knn_classify(bank, labels, q, k=10, prefilter=True),
        knn_classify(bank, labels, q, k=10, prefilter=False),
    )


def test_prefilter_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = F.normalize(torch.randn(1500, 8), dim=1)
    monkeypatch.setattr(knn_mod, "bf16_is_fast", lambda device: True)
    assert isinstance(knn_mod._searcher(bank, 200, 64, None), knn_mod._Fp32Bank)  # bank < 4 × 400
    assert isinstance(knn_mod._searcher(bank, 20, 64, None), knn_mod._Bf16Bank)
    assert isinstance(knn_mod._searcher(bank, 20, 64, False), knn_mod._Fp32Bank)
    assert isinstance(knn_mod._searcher(bank, 1000, 64, True), knn_mod._Fp32Bank)  # 2000 > bank
    monkeypatch.setattr(knn_mod, "bf16_is_fast", lambda device: False)
    assert isinstance(knn_mod._searcher(bank, 20, 64, None), knn_mod._Fp32Bank)
    assert isinstance(knn_mod._searcher(bank, 20, 64, True), knn_mod._Bf16Bank)


def test_prefilter_with_single_query_chunks_and_more_queries_than_the_block() -> None:
    xtr, ytr, xte, _ = _features(3000, 40, 16, 4, seed=5, spread=1.0)
    ref = knn_scores(xtr, ytr, xte, k=50, prefilter=False)
    torch.testing.assert_close(knn_scores(xtr, ytr, xte, k=50, chunk=1, prefilter=True), ref)
    search = knn_mod._Bf16Bank(F.normalize(xtr, dim=1), candidates=100, chunk=4)
    s, _ = search.top(F.normalize(xte, dim=1), 50)  # 40 queries, a block of 4 rows
    assert s.shape == (40, 50)


@pytest.mark.parametrize("onednn", [True, False])
def test_bound_holds_for_bf16_exact_inputs(onednn: bool) -> None:
    """With inputs that bf16 holds exactly, only the accumulation and the output's rounding are
    left in the bound: a product that rounded its partial sums to bf16 would break it. Checked
    through oneDNN's bf16 product and through PyTorch's own (used where oneDNN has no bf16)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # oneDNN's TF32 notice
        with torch.backends.mkldnn.flags(enabled=onednn):
            _check_exact_input_bound()


def _check_exact_input_bound() -> None:
    g = torch.Generator().manual_seed(7)
    bank = (torch.randn(2000, 2048, generator=g) / 2048**0.5).bfloat16().float()
    q = (torch.randn(32, 2048, generator=g) / 2048**0.5).bfloat16().float()
    bank[:32] = q  # similarities near 1 as well
    search = knn_mod._Bf16Bank(bank, candidates=8, chunk=32)
    assert search.res_max == 0.0
    q_lo = torch.cat([q, -torch.ones(32, 1)], dim=1).bfloat16()
    v = torch.mm(q_lo, search.lo.T).double()
    exact = torch.mm(q.double(), bank.double().T)
    assert (exact <= search._bound(q, q_lo, v)).all()
    assert (exact >= 2 * (v + 1) - search._bound(q, q_lo, v)).all()  # and symmetric below


def test_rescoring_is_an_fp32_product() -> None:
    """The sampled product of the candidates matches float64 to fp32 rounding (γ_F·‖q‖·‖b‖)."""
    g = torch.Generator().manual_seed(3)
    bank = F.normalize(torch.randn(5000, 2048, generator=g), dim=1)
    q = F.normalize(torch.randn(16, 2048, generator=g), dim=1)
    cand = torch.stack([torch.randperm(5000, generator=g)[:300].sort().values for _ in range(16)])
    got = knn_mod._Bf16Bank(bank, candidates=300, chunk=16)._rescore(q, cand)
    want = (q.double()[:, None, :] * bank.double()[cand]).sum(-1)
    assert ((got.double() - want).abs() <= knn_mod._gamma(2048) * 1.01).all()


def test_second_round_rescores_only_the_queries_the_first_leaves_uncertified() -> None:
    """300 candidates first, the other 100 only where needed: the answer is still the fp32
    product's, for queries certified in either round."""
    xtr, _, xte, _ = _features(8000, 400, 512, 10, seed=1, spread=4.0)  # dense near the 200th
    bank, q = F.normalize(xtr, dim=1), F.normalize(xte, dim=1)
    search = knn_mod._Bf16Bank(bank, candidates=400, chunk=128)
    rows: list[int] = []
    rescore = search._rescore

    def counting(qq: Tensor, cand: Tensor) -> Tensor:
        rows.append(cand.numel())
        return rescore(qq, cand)

    search._rescore = counting  # type: ignore[method-assign]
    s, i = search.top(q, 200)
    assert rows[0] == 400 * 300
    assert len(rows) == 2 and 0 < rows[1] < 400 * 100  # some queries, not all, went on
    assert search.certified > 0.9 * 400
    ref_s, ref_i = torch.mm(q, bank.T).topk(200, dim=1)
    torch.testing.assert_close(s, ref_s, rtol=0.0, atol=1e-6)
    assert torch.equal(i.sort(dim=1).values, ref_i.sort(dim=1).values)
