"""Exponential moving averages of weights (MoCo key encoder, BYOL target network).

Update rule (He et al. 2020 eq. 2; Grill et al. 2020 §3.1): θ_k ← m·θ_k + (1 − m)·θ_q for
parameters; buffers (BN running statistics, counters) are copied from the online network.
BYOL's momentum follows a cosine from ``base`` to 1: m(k) = 1 − (1 − base)(cos(π k / K) + 1) / 2.
"""

from __future__ import annotations

import copy
import math
from typing import TypeVar

import torch
from torch import nn

__all__ = ["EMAUpdater", "byol_momentum", "copy_frozen", "ema_update"]

M = TypeVar("M", bound=nn.Module)


def copy_frozen(module: M) -> M:
    """Deep copy of ``module`` with ``requires_grad=False`` on every parameter (a target network)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """In place: θ_target ← m·θ_target + (1 − m)·θ_online; buffers copied from ``online``.

    Args:
        target: the momentum (key / target) network; modified in place.
        online: the network trained by gradient descent; not modified.
        m: momentum in [0, 1]; m = 1 leaves ``target`` unchanged, m = 0 copies ``online``.

    Raises:
        ValueError: if ``m`` is outside [0, 1] or the two networks' parameter/buffer names differ.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"m must be in [0, 1], got {m}")
    t_params = dict(target.named_parameters())
    o_params = dict(online.named_parameters())
    if t_params.keys() != o_params.keys():
        raise ValueError("target and online must have the same parameter names")
    t_list: list[torch.Tensor] = [t_params[k] for k in o_params]
    o_list = [o_params[k].detach() for k in o_params]
    if t_list:
        # θ_t ← θ_t + (1 − m)(θ_o − θ_t) is the same update with one fused kernel per tensor list.
        torch._foreach_lerp_(t_list, o_list, 1.0 - m)
    t_bufs = dict(target.named_buffers())
    o_bufs = dict(online.named_buffers())
    if t_bufs.keys() != o_bufs.keys():
        raise ValueError("target and online must have the same buffer names")
    for k, b in o_bufs.items():
        t_bufs[k].copy_(b)


def byol_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """BYOL's cosine momentum: 1 − (1 − base)(cos(π·step/total_steps) + 1)/2.

    Equals ``base`` at step 0 and 1 at ``step == total_steps`` (clamped beyond).

    Raises:
        ValueError: if ``total_steps`` < 1, ``step`` < 0 or ``base`` outside [0, 1].
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"base must be in [0, 1], got {base}")
    k = min(step, total_steps)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


class EMAUpdater:
    """Holds an online network and its frozen EMA copy.

    Args:
        online: the trained network.
        momentum: fixed m, or the BYOL base when ``total_steps`` is given.
        total_steps: if set, ``update(step)`` uses ``byol_momentum(step, total_steps, momentum)``.

    ``target`` is created with ``copy_frozen(online)``; include it in the owning module (or
    checkpoint its ``state_dict``) so it is saved.
    """

    def __init__(self, online: nn.Module, momentum: float, total_steps: int | None = None) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.online = online
        self.target = copy_frozen(online)
        self.momentum = momentum
        self.total_steps = total_steps

    def momentum_at(self, step: int) -> float:
        """The momentum used at ``step``."""
        if self.total_steps is None:
            return self.momentum
        return byol_momentum(step, self.total_steps, self.momentum)

    def update(self, step: int = 0) -> float:
        """Apply one EMA update; returns the momentum used."""
        m = self.momentum_at(step)
        ema_update(self.target, self.online, m)
        return m
