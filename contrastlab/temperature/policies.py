"""Temperature policies: one interface for fixed, scheduled, learnable and per-pair τ.

A policy is an ``nn.Module`` called as ``policy(sim, step=None, positive=None)``; it returns τ
broadcastable to ``sim`` (a scalar tensor for global policies, a tensor of ``sim``'s shape for
per-pair ones). Losses divide the similarities by it. Scheduled policies are pure functions of the
step they are given: there is no hidden counter, so resuming a run at step ``k`` gives the same τ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "DySTreSS",
    "Fixed",
    "Learnable",
    "PosNeg",
    "TemperatureLike",
    "TemperaturePolicy",
    "as_policy",
]


def _check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float > 0, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return v


def _check_range(tau_min: float, tau_max: float) -> tuple[float, float]:
    lo = _check_positive(tau_min, "tau_min")
    hi = _check_positive(tau_max, "tau_max")
    if lo > hi:
        raise ValueError(f"tau_min must be <= tau_max, got tau_min={lo}, tau_max={hi}")
    return lo, hi


class TemperaturePolicy(nn.Module):
    """Base class of temperature policies.

    Attributes:
        per_pair: True when τ depends on the similarity of each pair (then it has ``sim``'s
            shape); False when τ is one value for every logit.
    """

    per_pair: bool = False

    def forward(
        self, sim: Tensor, step: int | None = None, positive: Tensor | None = None
    ) -> Tensor:
        """Return τ broadcastable to ``sim`` (any shape) at training ``step``."""
        raise NotImplementedError

    def value(self, step: int | None = None) -> float:
        """A representative scalar τ for logging (exact for global policies)."""
        with torch.no_grad():
            return float(
                self(torch.zeros(()), step=step, positive=torch.zeros((), dtype=torch.bool))
            )


class Fixed(TemperaturePolicy):
    """A constant temperature τ (SimCLR, MoCo, SupCon)."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = _check_positive(tau, "temperature")

    def forward(
        self, sim: Tensor, step: int | None = None, positive: Tensor | None = None
    ) -> Tensor:
        return torch.tensor(self.tau, dtype=sim.dtype, device=sim.device)

    def value(self, step: int | None = None) -> float:
        return self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class Learnable(TemperaturePolicy):
    """A learnable global temperature (CLIP's logit scale).

    ``log_scale`` is initialised to ``log(1/init)`` and ``τ = exp(−log_scale)``. Each forward
    first clamps the parameter itself, in place, to ``log_scale ≤ log(1/min)`` (as CLIP clamps
    its logit scale after each step), so τ never falls below ``min`` and a τ that reached the
    floor still gets gradients that can raise it again (a clamp inside the graph would give it
    none, for good). Gradients reach ``log_scale`` through the loss; give it its own learning
    rate through the optimiser's parameter groups if wanted.
    """

    def __init__(self, init: float = 0.07, min: float = 0.01) -> None:
        super().__init__()
        init_v = _check_positive(init, "init")
        self.min = _check_positive(min, "min")
        if init_v < self.min:
            raise ValueError(f"init must be >= min, got init={init_v}, min={self.min}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_v)))

    def forward(
        self, sim: Tensor, step: int | None = None, positive: Tensor | None = None
    ) -> Tensor:
        with torch.no_grad():  # the optimiser may have stepped past the floor
            self.log_scale.clamp_(max=math.log(1.0 / self.min))
        return torch.exp(-self.log_scale).to(dtype=sim.dtype, device=sim.device)

    def extra_repr(self) -> str:
        scale = min(float(self.log_scale.detach()), math.log(1.0 / self.min))
        return f"tau={math.exp(-scale):.4g}, min={self.min}"


class DySTreSS(TemperaturePolicy):
    """Per-pair similarity-dependent temperature (DySTreSS, Manna et al. 2023).

    ``τ_ij = τ_min + (τ_max − τ_min)·sin²(π s_ij / 2)``: smallest for orthogonal pairs, largest
    for s = ±1. With ``shift = c`` (the authors' shifted variant, c = 0.2 there): τ = τ_max where
    s > −c, else ``τ_min + ½(τ_max − τ_min)(1 + cos(π (s + c)/(1 − c)))``. τ is computed from
    detached similarities (no gradient flows through it) and applies to every logit, positives
    included.
    """

    per_pair = True

    def __init__(
        self, tau_min: float = 0.07, tau_max: float = 0.2, shift: float | None = None
    ) -> None:
        super().__init__()
        self.tau_min, self.tau_max = _check_range(tau_min, tau_max)
        if shift is not None and (
            isinstance(shift, bool)
            or not isinstance(shift, (int, float))
            or not 0.0 <= float(shift) < 1.0
        ):
            raise ValueError(f"shift must be a number in [0, 1) or None, got {shift!r}")
        self.shift = None if shift is None else float(shift)

    def forward(
        self, sim: Tensor, step: int | None = None, positive: Tensor | None = None
    ) -> Tensor:
        s = sim.detach().clamp(-1.0, 1.0)
        span = self.tau_max - self.tau_min
        if self.shift is None:
            return self.tau_min + span * torch.sin(0.5 * math.pi * s).square()
        c = self.shift
        curve = self.tau_min + 0.5 * span * (1.0 + torch.cos(math.pi * (s + c) / (1.0 - c)))
        return torch.where(s > -c, torch.full_like(s, self.tau_max), curve)

    def value(self, step: int | None = None) -> float:
        """τ of an orthogonal pair (s = 0)."""
        return float(self(torch.zeros(())))

    def extra_repr(self) -> str:
        return f"tau_min={self.tau_min}, tau_max={self.tau_max}, shift={self.shift}"


TemperatureLike = float | TemperaturePolicy


def as_policy(temperature: TemperatureLike, name: str = "temperature") -> TemperaturePolicy:
    """Turn a float into :class:`Fixed`; pass a policy through; reject anything else."""
    if isinstance(temperature, TemperaturePolicy):
        return temperature
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(
            f"{name} must be a float > 0 or a TemperaturePolicy, got {type(temperature).__name__}"
        )
    return Fixed(_check_positive(float(temperature), name))


class PosNeg(TemperaturePolicy):
    """Separate temperatures for positive and negative logits (as in the DySTreSS code)."""

    def __init__(self, positive: TemperatureLike, negative: TemperatureLike) -> None:
        super().__init__()
        self.pos_policy = as_policy(positive, "positive")
        self.neg_policy = as_policy(negative, "negative")
        self.per_pair = True

    def forward(
        self, sim: Tensor, step: int | None = None, positive: Tensor | None = None
    ) -> Tensor:
        if positive is None:
            raise ValueError("PosNeg needs the positive mask: positive must be a bool tensor")
        tp = self.pos_policy(sim, step=step, positive=positive)
        tn = self.neg_policy(sim, step=step, positive=positive)
        return torch.where(positive, tp, tn)

    def value(self, step: int | None = None) -> float:
        """The negatives' τ (the one that shapes the denominator)."""
        return self.neg_policy.value(step)
