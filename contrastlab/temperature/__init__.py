"""Temperature policies behind one interface: ``policy(sim, step=None, positive=None) -> τ``.

* :class:`Fixed` — a constant.
* :class:`Cosine` — Kukleva et al.'s cosine schedule, a pure function of the step.
* :class:`Learnable` — CLIP's log-space parameter, clamped so τ ≥ ``min``.
* :class:`DySTreSS` — per-pair τ from the (detached) similarity, plain or shifted.
* :class:`PosNeg` — separate policies for positive and negative logits.

Example::

    >>> import torch
    >>> from contrastlab.temperature import DySTreSS
    >>> tau = DySTreSS(0.07, 0.2)
    >>> tau(torch.tensor([0.0, 1.0]))
    tensor([0.0700, 0.2000])
"""

from contrastlab.temperature.policies import (
    DySTreSS,
    Fixed,
    Learnable,
    PosNeg,
    TemperatureLike,
    TemperaturePolicy,
    as_policy,
)
from contrastlab.temperature.schedules import Cosine, cosine_tau

POLICIES: dict[str, type[TemperaturePolicy]] = {
    "fixed": Fixed,
    "cosine": Cosine,
    "learnable": Learnable,
    "dystress": DySTreSS,
}

__all__ = [
    "POLICIES",
    "Cosine",
    "DySTreSS",
    "Fixed",
    "Learnable",
    "PosNeg",
    "TemperatureLike",
    "TemperaturePolicy",
    "as_policy",
    "cosine_tau",
]
