"""Hardness: how the contrastive gradient spreads over the negatives (Wang & Liu, CVPR 2021).

For anchor ``i`` with positive ``i⁺`` and negatives ``k``, NT-Xent's gradient on the negatives is
``∂L/∂s_ik = P_ik/τ`` and the *relative penalty* ``r_i(k) = exp(s_ik/τ) / Σ_k' exp(s_ik'/τ)`` is a
Boltzmann distribution over negatives: small τ concentrates it on the hardest negatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastlab.ops import (
    block_size_for,
    check_embeddings,
    check_same_shape,
    normalize,
    row_blocks,
)

__all__ = ["HardnessResult", "hardness"]


@dataclass(frozen=True)
class HardnessResult:
    """Per-anchor hardness profile, each a ``(N,)`` float tensor.

    Attributes:
        entropy: entropy (nats) of the relative penalty ``r_i`` over the negatives.
        effective_negatives: ``exp(entropy)``: how many negatives effectively receive gradient.
        max_weight: ``max_k r_i(k)``: the share of the negatives' gradient on the hardest one.
        positive_share: ``P_ii``, the softmax probability of the positive; the gradient magnitude
            on the positive (and, in total, on the negatives) is ``(1 − P_ii)/τ``.
        n_negatives: negatives per anchor (``2N − 2``).
    """

    entropy: Tensor
    effective_negatives: Tensor
    max_weight: Tensor
    positive_share: Tensor
    n_negatives: int

    def summary(self) -> dict[str, float]:
        """Means over anchors (``effective_negatives_frac`` divides by the number of negatives)."""
        return {
            "hardness_entropy": float(self.entropy.mean()),
            "effective_negatives": float(self.effective_negatives.mean()),
            "effective_negatives_frac": float(self.effective_negatives.mean()) / self.n_negatives,
            "max_negative_weight": float(self.max_weight.mean()),
            "positive_share": float(self.positive_share.mean()),
        }


TemperatureArg = float | Callable[..., Tensor]


def _tau(
    temperature: TemperatureArg, sim: Tensor, positive: Tensor, step: int | None
) -> Tensor | float:
    if callable(temperature):
        return temperature(sim, step=step, positive=positive)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ValueError(
            f"temperature must be a finite float > 0 or a temperature policy, got {temperature!r}"
        )
    return float(temperature)


@torch.no_grad()
def hardness(
    z1: Tensor,
    z2: Tensor,
    temperature: TemperatureArg = 0.5,
    *,
    step: int | None = None,
) -> HardnessResult:
    """Hardness profile of NT-Xent's gradient for the N anchors of ``z1``.

    Anchor ``i`` is ``z1_i``, its positive ``z2_i``, its negatives the other ``2N − 2`` rows of
    ``[z1; z2]``. Computed in row blocks (no ``N × 2N`` tensor at once for large N).

    Args:
        z1, z2: ``(N, D)`` two views, N ≥ 2 (L2-normalised here).
        temperature: a float τ or a temperature policy (called as ``policy(sim, step=, positive=)``).
        step: training step for scheduled policies.
    """
    check_embeddings(z1, "z1", min_rows=2)
    check_embeddings(z2, "z2", min_rows=2)
    check_same_shape(z1, z2, "z1", "z2")
    n = z1.shape[0]
    a = normalize(z1.float())
    contrast = torch.cat([a, normalize(z2.float())], dim=0)
    parts: dict[str, list[Tensor]] = {"h": [], "m": [], "p": []}
    for start, stop in row_blocks(n, block_size_for(2 * n, 1 << 22)):
        rows = torch.arange(stop - start, device=a.device)
        sim = a[start:stop] @ contrast.T
        positive = torch.zeros_like(sim, dtype=torch.bool)
        positive[rows, n + start + rows] = True
        logits = sim / _tau(temperature, sim, positive, step)
        self_mask = torch.zeros_like(positive)
        self_mask[rows, start + rows] = True
        neg_logits = logits.masked_fill(positive | self_mask, -torch.inf)
        r = torch.softmax(neg_logits, dim=1)
        logr = torch.log_softmax(neg_logits, dim=1)
        parts["h"].append(-(r * logr.masked_fill(r == 0, 0.0)).sum(dim=1))
        parts["m"].append(r.max(dim=1).values)
        all_logits = logits.masked_fill(self_mask, -torch.inf)
        parts["p"].append(torch.softmax(all_logits, dim=1)[rows, n + start + rows])
    entropy = torch.cat(parts["h"])
    return HardnessResult(
        entropy=entropy,
        effective_negatives=entropy.exp(),
        max_weight=torch.cat(parts["m"]),
        positive_share=torch.cat(parts["p"]),
        n_negatives=2 * n - 2,
    )
