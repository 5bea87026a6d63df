"""Numbers behind the figures, computed from a run's saved test projections.

* :func:`penalty_profile`: Wang & Liu (CVPR 2021, Fig. 2 style) relative penalty over negatives
  ``r_i(k) = exp(s_ik/τ) / Σ_k' exp(s_ik'/τ)`` binned by the negative's similarity ``s_ik`` and
  averaged over anchors, for several τ, in anchor blocks (never an ``N × 2N`` tensor at once).
* :func:`similarity_samples`: positive-pair similarities ``z1_i·z2_i`` and random negative pairs.
* :func:`load_projections` / :func:`load_metrics`: read a run directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "PenaltyProfile",
    "load_metrics",
    "load_projections",
    "penalty_profile",
    "similarity_samples",
]


@dataclass(frozen=True)
class PenaltyProfile:
    """Mean relative penalty per similarity bin.

    Attributes:
        centers: ``(B,)`` bin centres on [−1, 1].
        counts: ``(B,)`` number of (anchor, negative) pairs per bin (the negatives' density).
        weight: τ → ``(B,)`` mean ``r_i(k) · n_neg`` per bin (1 = the uniform share; NaN for an
            empty bin).
        n_negatives: negatives per anchor.
    """

    centers: np.ndarray
    counts: np.ndarray
    weight: dict[float, np.ndarray]
    n_negatives: int


def load_projections(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(z1, z2)`` float32 ``(N, D)`` from ``test_projections.npy``, or None if absent."""
    path = Path(run_dir) / "test_projections.npy"
    if not path.is_file():
        return None
    z = np.load(path)
    if z.ndim != 3 or z.shape[1] < 2:
        raise ValueError(f"{path}: expected (N, 2, D) projections, got shape {z.shape}")
    return z[:, 0].astype(np.float32), z[:, 1].astype(np.float32)


def load_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per-epoch records of ``metrics.jsonl`` (empty if absent; unreadable lines skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _unit(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    unit: torch.Tensor = t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return unit


@torch.no_grad()
def penalty_profile(
    z1: np.ndarray,
    z2: np.ndarray,
    taus: Sequence[float],
    *,
    bins: int = 40,
    max_anchors: int = 500,
    block: int = 64,
    seed: int = 0,
) -> PenaltyProfile:
    """Relative penalty over negatives against their similarity, for each τ in ``taus``.

    Anchors are ``z1_i`` (a seeded subset of ``max_anchors``); each anchor's negatives are all
    ``2N − 2`` other rows of ``[z1; z2]`` (its positive ``z2_i`` and itself excluded).

    Args:
        z1, z2: ``(N, D)`` two views, N ≥ 2 (normalised here).
        taus: temperatures (> 0) at which to weigh the same embeddings.

    Raises:
        ValueError: mismatched shapes, N < 2 or a τ ≤ 0.
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(
            f"z1, z2 must be (N, D) with N ≥ 2 and equal shapes, got {z1.shape}, {z2.shape}"
        )
    if any(not t > 0 for t in taus):
        raise ValueError(f"every τ must be > 0, got {list(taus)}")
    n = z1.shape[0]
    a, b = _unit(z1), _unit(z2)
    contrast = torch.cat([a, b])
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randperm(n, generator=g)[: min(max_anchors, n)]
    n_neg = 2 * n - 2
    sums = {float(t): torch.zeros(bins + 1, dtype=torch.float64) for t in taus}
    counts = torch.zeros(bins + 1, dtype=torch.float64)
    for start in range(0, anchors.numel(), block):
        idx = anchors[start : start + block]
        rows = torch.arange(idx.numel())
        sim = a[idx] @ contrast.T
        drop = torch.zeros_like(sim, dtype=torch.bool)
        drop[rows, idx] = True
        drop[rows, n + idx] = True
        # Self and positive go to an extra bin (index ``bins``) that is discarded at the end.
        bin_idx = ((sim.clamp(-1, 1) + 1) * (bins / 2)).long().clamp_(0, bins - 1)
        bin_idx = bin_idx.masked_fill_(drop, bins).flatten()
        counts += torch.bincount(bin_idx, minlength=bins + 1).double()
        for t in sums:
            r = torch.softmax((sim / t).masked_fill_(drop, -torch.inf), dim=1)
            sums[t] += torch.bincount(bin_idx, weights=r.flatten(), minlength=bins + 1).double()
    counts = counts[:bins]
    sums = {t: s[:bins] * n_neg for t, s in sums.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = {t: (s / counts).numpy() for t, s in sums.items()}
    centers = (np.arange(bins) + 0.5) / bins * 2 - 1
    return PenaltyProfile(centers, counts.numpy(), weight, n_neg)


def similarity_samples(
    z1: np.ndarray, z2: np.ndarray, *, n_negative: int = 20_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of positive pairs ``z1_i·z2_i`` (N,) and of random negative pairs
    ``z1_i·z2_j`` with ``i ≠ j`` (``n_negative``,)."""
    a, b = _unit(z1), _unit(z2)
    n = a.shape[0]
    pos = (a * b).sum(1).numpy()
    if n < 2:
        return pos, np.empty(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_negative)
    j = (i + rng.integers(1, n, n_negative)) % n
    neg = (a[torch.from_numpy(i)] * b[torch.from_numpy(j)]).sum(1).numpy()
    return pos, neg
