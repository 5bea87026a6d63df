"""Weighted k-nearest-neighbour classification (Wu et al., "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", CVPR 2018; SPEC §9).

Features are L2-normalised; for each test row the k most cosine-similar training rows vote for
their class with weight exp(s / t); the class with the largest summed weight wins (ties go to the
lower class index). Defaults k = 200, t = 0.1.

Memory: the test set is processed in chunks of ``chunk`` rows, so the peak extra memory is
chunk × N_train floats (1024 × 60 000 × 4 B ≈ 246 MB by default); 10k test × 60k train × 256-d
took ≈ 9 CPU-seconds on 2 Zen-3 threads (measured on a shared, loaded machine), dominated by the
matmul and top-k.

Speed: where bf16 is native (AVX512-BF16 or AMX), the neighbours are found by a certified bf16
prefilter (see ``_Bf16Bank``): the same neighbours and votes as the fp32 product (up to rows
whose fp32 scores tie to rounding), 1.5–1.7× faster on trained encoders' Fashion-MNIST features
(10k × 60k, 1024 or 2048 dimensions, 2 Zen-4 threads). Where its certificate fails too often (an
untrained encoder's features are nearly parallel) it hands over to the fp32 product, which is
used as it is on other hardware.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.eval.features import bf16_is_fast

__all__ = ["knn_accuracy", "knn_classify", "knn_scores"]


def _check(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, k: int, t: float) -> None:
    if train_feats.dim() != 2:
        raise ValueError(f"train_feats must be (N, F), got {tuple(train_feats.shape)}")
    if test_feats.dim() != 2 or test_feats.shape[1] != train_feats.shape[1]:
        raise ValueError(
            f"test_feats must be (M, {train_feats.shape[1]}), got {tuple(test_feats.shape)}"
        )
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(
            f"train_labels must be ({train_feats.shape[0]},), got {tuple(train_labels.shape)}"
        )
    if train_feats.shape[0] == 0:
        raise ValueError("train_feats is empty")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if t <= 0:
        raise ValueError(f"t must be > 0, got {t}")


def knn_scores(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    k: int = 200,
    t: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 1024,
    prefilter: bool | None = None,
) -> Tensor:
    """Summed class votes Σ_{neighbours of class c} exp(s/t), float32 (M, num_classes).

    The votes are absolute, so they overflow to inf where s / t > 88 (t below ~0.0114 for close
    neighbours); ``knn_classify`` compares them relative to each row's largest weight instead.

    Args:
        train_feats: (N, F) features of the labelled bank (need not be normalised).
        train_labels: (N,) int labels in [0, num_classes).
        test_feats: (M, F) query features.
        k: neighbours (clipped to N).
        t: temperature of the vote weights.
        num_classes: C; inferred as max(train_labels) + 1 when None.
        chunk: test rows per block (bounds memory).
        prefilter: find the neighbours through the certified bf16 prefilter (``_Bf16Bank``),
            which gives the fp32 product's neighbours; None (default) uses it on CPUs with
            native bf16 when the bank has at least four times the max(2k, k + 64) candidates,
            False never.

    Raises:
        ValueError: on mismatched shapes, k < 1, t ≤ 0, chunk < 1, or labels out of range.
    """
    return _votes(train_feats, train_labels, test_feats, k, t, num_classes, chunk, False, prefilter)


_U_BF16 = 2.0**-8  # unit roundoff of bf16 (8-bit significand, round to nearest even)
_U_FP32 = 2.0**-24
_MIN_CERTIFIED = 0.6  # below this share of certified queries the prefilter is slower than fp32


def _gamma(n: int) -> float:
    """Higham's γ_n = n·u / (1 − n·u) in fp32: bounds the rounding of any n-term sum's order."""
    nu = n * _U_FP32
    return nu / (1.0 - nu)


class _Fp32Bank:
    """Top-k by one fp32 product per chunk of queries (the reference search)."""

    def __init__(self, bank: Tensor, chunk: int) -> None:
        self.bank = bank
        # One similarity block reused across chunks: a (1024, 60000) float block is 245 MB, and a
        # new one per chunk was alive beside the previous one (kNN of 10k × 60k 1024-d features:
        # peak resident memory 1,008 MB against 1,242 MB, 2 threads, AVX2 EPYC).
        self.block = torch.empty(chunk, bank.shape[0], device=bank.device, dtype=bank.dtype)

    def top(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(m, k) similarities and bank indices of the k most similar rows, best first."""
        sim = torch.mm(q, self.bank.T, out=self.block[: q.shape[0]])  # (m, N)
        top_s, top_i = sim.topk(k, dim=1)
        return top_s, top_i


class _Bf16Bank:
    """Top-k of an fp32 bank found through a bf16 prefilter, certified to equal the fp32 search.

    The queries' similarities to the whole bank are computed from bf16 copies (fp32
    accumulation, output rounded to bf16) as q̂·b̂ − 1, through an extra column of ±1, so that
    the output's rounding shrinks near s = 1 where the neighbours are. The ``candidates`` best
    by that product are re-scored exactly in fp32 and the top k kept. A bank row j outside the
    candidates has a bf16 value v_j ≤ v_L, the last candidate's, so its true similarity is at
    most (Higham's γ bounds; Cauchy–Schwarz on the rounding residuals)

        v_L + 1 + u·|v_L| / (1 − u)                    output rounding to bf16 (u = 2⁻⁸)
            + γ_{F+1}·(‖q̂‖·(max‖b‖ + max‖b − b̂‖) + 1)   fp32 accumulation
            + ‖q − q̂‖·max‖b‖ + ‖q̂‖·max‖b − b̂‖          rounding the inputs to bf16

    and a query's result is the fp32 search's whenever its k-th exact score beats this bound by
    more than the fp32 rounding of both scores (2·γ_F·‖q‖·max‖b‖). Queries that miss it are
    searched again against the whole bank in fp32. With k 200 and 2k candidates, 10k × 60k
    Fashion-MNIST features of trained encoders (1024 or 2048 dimensions) were all certified but
    one query in 10,000 (``benchmarks/training/knn_prefilter.py``).
    """

    def __init__(self, bank: Tensor, candidates: int, chunk: int) -> None:
        n, f = bank.shape
        self.lo = torch.empty(n, f + 1, dtype=torch.bfloat16, device=bank.device)
        self.lo[:, :f] = bank
        self.lo[:, f] = 1.0
        self.block = torch.empty(chunk, n, dtype=torch.bfloat16, device=bank.device)
        self.bank, self.candidates = bank, candidates
        self.norm_max = float(bank.norm(dim=1).max())
        self.res_max = 0.0  # max ‖b − b̂‖, in blocks that bound the temporary memory
        for a in range(0, n, 8192):
            res = bank[a : a + 8192] - self.lo[a : a + 8192, :f].float()
            self.res_max = max(self.res_max, float(res.norm(dim=1).max()))
        self.certified = self.searched = 0  # queries certified / searched so far
        # Set once the certificate fails too often to pay for the bf16 product, as on an
        # untrained encoder's features (cosines of ~0.994 with 0.0008 between the 200th and
        # the 400th neighbour): the remaining queries then go straight to the fp32 product.
        self.gave_up = False
        self.fp32: _Fp32Bank | None = None  # the fallback search, made on first use

    def top(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(m, k) similarities and bank indices of the k most similar rows, best first."""
        if self.gave_up:
            return self._exact(q, k)
        m, f = q.shape
        q_lo = torch.empty(m, f + 1, dtype=torch.bfloat16, device=q.device)
        q_lo[:, :f] = q
        q_lo[:, f] = -1.0
        if m > self.block.shape[0]:
            self.block = torch.empty(m, self.lo.shape[0], dtype=self.lo.dtype, device=q.device)
        approx = torch.mm(q_lo, self.lo.T, out=self.block[:m])  # (m, N): q̂·b̂ − 1
        best = approx.topk(self.candidates, dim=1)  # values sorted best first
        values = best.values
        # Rescoring reads every candidate's fp32 row, so it is done in two rounds: the best
        # ``first`` candidates for every query, the rest only for the queries they leave
        # uncertified (the bound at the last candidate read). On trained encoders' Fashion-MNIST
        # features (k 200: 300, then 100 more) 6-12% of the queries needed the second round,
        # 306-312 rows were read per query instead of 400, and the whole search took 10.7-11.1 s
        # instead of 11.5-11.8 s at 2048 dimensions (6.0 s instead of 6.2-6.4 s at 1024), with
        # the same votes.
        first = min(self.candidates, k + (self.candidates - k) // 2)
        top_s, top_i = self._rescored_top(q, best.indices[:, :first], k)
        ok = top_s[:, -1].double() > self._bound(q, q_lo, values[:, first - 1].double())
        more = (~ok).nonzero().squeeze(1)
        if more.numel() and first < self.candidates:
            q_more = q.index_select(0, more)
            rest = best.indices[more, first:].sort(dim=1).values
            s_all = torch.cat([top_s[more], self._rescore(q_more, rest)], dim=1)
            i_all = torch.cat([top_i[more], rest], dim=1)
            s_more, pos = s_all.topk(k, dim=1)
            top_s[more], top_i[more] = s_more, i_all.gather(1, pos)
            bound = self._bound(q_more, q_lo[more], values[more, -1].double())
            ok[more] = s_more[:, -1].double() > bound
        self.searched += m
        self.certified += int(ok.sum())
        # the prefilter costs about half an fp32 product, and each uncertified query a whole one
        self.gave_up = self.certified < _MIN_CERTIFIED * self.searched
        redo = (~ok).nonzero().squeeze(1)
        if redo.numel():
            top_s[redo], top_i[redo] = self._exact(q.index_select(0, redo), k)
        return top_s, top_i

    def _exact(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The fp32 search for the queries ``q`` (m, F), in blocks of the bf16 block's bytes."""
        if self.fp32 is None:
            self.fp32 = _Fp32Bank(self.bank, max(1, self.block.shape[0] // 2))
        step = self.fp32.block.shape[0]
        parts = [self.fp32.top(q[a : a + step], k) for a in range(0, len(q), step)]
        return torch.cat([s for s, _ in parts]), torch.cat([i for _, i in parts])

    def _rescored_top(self, q: Tensor, cand: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best of the candidates ``cand`` (m, c ≥ k) by exact fp32 similarity to ``q``
        (m, F): (m, k) similarities and bank indices, best first."""
        cand = cand.sort(dim=1).values  # ascending, as the sampled product's CSR wants
        exact = self._rescore(q, cand)
        top_s, pos = exact.topk(k, dim=1)
        return top_s, cand.gather(1, pos)

    def _rescore(self, q: Tensor, cand: Tensor) -> Tensor:
        """Exact fp32 similarities q_i · b_{cand[i, j]}, (m, c), for the candidates ``cand``
        (m, c), sorted ascending along each row.

        A sampled product (SDDMM) reads each candidate row once and gathers nothing: on 2 Zen-4
        threads, 1024 queries × 400 candidates of 2048 dimensions took 0.29 s against 1.9 s for
        gathering the rows and a batched product.
        """
        m, c = cand.shape
        crow = torch.arange(0, m * c + 1, c, device=q.device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = torch.sparse_csr_tensor(
                crow,
                cand.reshape(-1),
                torch.zeros(m * c, device=q.device),
                size=(m, self.bank.shape[0]),
                check_invariants=False,
            )
            sampled = torch.sparse.sampled_addmm(pattern, q, self.bank.T, beta=0.0)
        values: Tensor = sampled.values()
        return values.view(m, c)

    def _bound(self, q: Tensor, q_lo: Tensor, v_last: Tensor) -> Tensor:
        """The largest score (float64) a bank row whose bf16 value is at most ``v_last`` can have
        in the fp32 search: (m,) for v_last (m,), or (m, n) for v_last (m, n)."""
        f = q.shape[1]
        q_hat = q_lo[:, :f].float()
        nq = q.norm(dim=1).double()
        nq_hat = q_hat.norm(dim=1).double()
        rq = (q - q_hat).norm(dim=1).double()
        if v_last.dim() == 2:
            nq, nq_hat, rq = nq[:, None], nq_hat[:, None], rq[:, None]
        u, nb, rb = _U_BF16, self.norm_max, self.res_max
        out_round = u * v_last.abs() / (1.0 - u)
        accumulate = _gamma(f + 1) * (nq_hat * (nb + rb) + 1.0)
        inputs = rq * nb + nq_hat * rb
        both_fp32 = 2.0 * _gamma(f) * nq * nb
        # the norms above are themselves rounded in fp32: a relative margin covers them
        slack: Tensor = (out_round + accumulate + inputs + both_fp32) * 1.01 + 1e-6
        return v_last + 1.0 + slack


def _searcher(bank: Tensor, k: int, chunk: int, prefilter: bool | None) -> _Fp32Bank | _Bf16Bank:
    """The bf16 prefilter when asked for (``True``) or, for ``None``, on a CPU with native bf16
    and a bank at least 4× the candidates; the fp32 product otherwise."""
    candidates = max(2 * k, k + 64)
    if prefilter is None:
        prefilter = (
            bank.device.type == "cpu"
            and bank.shape[0] >= 4 * candidates
            and bf16_is_fast(bank.device)
        )
    if prefilter and candidates < bank.shape[0]:
        return _Bf16Bank(bank, candidates, chunk)
    return _Fp32Bank(bank, chunk)


@torch.no_grad()
def _votes(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    k: int,
    t: float,
    num_classes: int | None,
    chunk: int,
    relative: bool,
    prefilter: bool | None = None,
) -> Tensor:
    """``knn_scores``; with ``relative`` each row's votes are divided by exp(s_max / t) (its
    nearest neighbour's weight), which keeps them finite for any t and leaves the argmax."""
    _check(train_feats, train_labels, test_feats, k, t)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    labels = train_labels.to(device=train_feats.device, dtype=torch.long)
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    if int(labels.min()) < 0 or int(labels.max()) >= c:
        raise ValueError(f"train_labels must lie in [0, {c}), got [{labels.min()}, {labels.max()}]")
    bank = F.normalize(train_feats.float(), dim=1)
    k = min(k, bank.shape[0])
    out = torch.empty(test_feats.shape[0], c, device=bank.device)
    search = _searcher(bank, k, min(chunk, max(1, test_feats.shape[0])), prefilter)
    for start in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[start : start + chunk].to(bank.device).float(), dim=1)
        top_s, top_i = search.top(q, k)  # (m, k)
        weights = ((top_s - top_s[:, :1]) if relative else top_s).div_(t).exp_()
        votes = torch.zeros(q.shape[0], c, device=bank.device)
        votes.scatter_add_(1, labels[top_i], weights)
        out[start : start + q.shape[0]] = votes
    return out


def knn_classify(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    k: int = 200,
    t: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 1024,
    prefilter: bool | None = None,
) -> Tensor:
    """Weighted-kNN predictions, int64 (M,). Arguments as in ``knn_scores``; the votes are
    compared relative to each row's largest weight, so a small ``t`` cannot overflow them."""
    votes = _votes(train_feats, train_labels, test_feats, k, t, num_classes, chunk, True, prefilter)
    return votes.argmax(dim=1)


def knn_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    k: int = 200,
    t: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 1024,
    prefilter: bool | None = None,
) -> float:
    """Weighted-kNN top-1 accuracy in percent (NaN for an empty test set, M = 0).

    Raises:
        ValueError: as ``knn_scores``, or if ``test_labels`` is not (M,).
    """
    if test_labels.shape != (test_feats.shape[0],):
        raise ValueError(
            f"test_labels must be ({test_feats.shape[0]},), got {tuple(test_labels.shape)}"
        )
    if num_classes is None:
        top = int(test_labels.max()) if test_labels.numel() else 0
        num_classes = max(int(train_labels.max()), top) + 1
    pred = knn_classify(train_feats, train_labels, test_feats, k, t, num_classes, chunk, prefilter)
    return 100.0 * (pred.cpu() == test_labels.cpu()).float().mean().item()
