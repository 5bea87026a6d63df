"""Scheduled temperatures: pure functions of the step they are given."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastlab.temperature.policies import TemperaturePolicy, _check_positive, _check_range

__all__ = ["Cosine", "cosine_tau"]


def cosine_tau(step: float, tau_min: float, tau_max: float, period: float) -> float:
    """Kukleva et al. (ICLR 2023): ``τ(e) = τ_min + ½(τ_max − τ_min)(1 + cos(π e / T))``.

    Starts at ``τ_max`` (e = 0), reaches ``τ_min`` at e = T and returns to ``τ_max`` at 2T.
    """
    return tau_min + 0.5 * (tau_max - tau_min) * (1.0 + math.cos(math.pi * step / period))


class Cosine(TemperaturePolicy):
    """Cosine temperature schedule (Kukleva et al. 2023), τ_min 0.1, τ_max 1.0, T = 200.

    ``step`` is whatever unit the caller counts (epochs in the paper, or optimiser steps):
    ``period`` is in the same unit. The step is required: there is no hidden counter.
    """

    def __init__(self, tau_min: float = 0.1, tau_max: float = 1.0, period: float = 200) -> None:
        super().__init__()
        self.tau_min, self.tau_max = _check_range(tau_min, tau_max)
        self.period = _check_positive(period, "period")

    def forward(
        self, sim: Tensor, step: int | None = None, positive: Tensor | None = None
    ) -> Tensor:
        if step is None:
            raise ValueError("Cosine temperature needs step (the schedule is a function of it)")
        tau = cosine_tau(float(step), self.tau_min, self.tau_max, self.period)
        return torch.tensor(tau, dtype=sim.dtype, device=sim.device)

    def value(self, step: int | None = None) -> float:
        """τ at ``step`` for logging; without a step, τ at step 0 (τ_max), where ``forward``
        refuses to guess."""
        return cosine_tau(float(step or 0), self.tau_min, self.tau_max, self.period)

    def extra_repr(self) -> str:
        return f"tau_min={self.tau_min}, tau_max={self.tau_max}, period={self.period}"
