"""Learning-rate schedules: linear warmup then cosine decay (SimCLR, Chen et al. 2020, §B.1;
Loshchilov & Hutter 2017 without restarts)."""

from __future__ import annotations

import math

import torch

__all__ = ["WarmupCosine", "build_scheduler", "warmup_cosine"]


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, base_lr: float, final_lr: float = 0.0
) -> float:
    """Learning rate at ``step`` (0-based).

    Warmup: ``base_lr · (step + 1) / warmup_steps`` for step < warmup_steps (so the first step is
    not wasted at lr 0, and step ``warmup_steps − 1`` reaches ``base_lr``). Then cosine:
    ``final_lr + (base_lr − final_lr)(1 + cos(π p)) / 2`` with p = (step − warmup)/(total − warmup),
    clamped to [0, 1]: ``base_lr`` at ``step == warmup_steps``, ``final_lr`` at ``total_steps``.

    Raises:
        ValueError: if total_steps < 1, warmup_steps < 0 or warmup_steps > total_steps.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = total_steps - warmup_steps
    p = 1.0 if span == 0 else min(max((step - warmup_steps) / span, 0.0), 1.0)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


class WarmupCosine:
    """Picklable multiplier for ``LambdaLR``: step → warmup_cosine(step, …, 1.0, final_ratio).

    Its attributes are plain numbers, so ``LambdaLR.state_dict()`` stores them and the state
    loads with ``torch.load(weights_only=True)``.
    """

    def __init__(self, total_steps: int, warmup_steps: int, final_ratio: float = 0.0) -> None:
        warmup_cosine(0, total_steps, warmup_steps, 1.0, final_ratio)  # validates
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.final_ratio = final_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.warmup_steps, 1.0, self.final_ratio)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    final_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step ``LambdaLR``: every group's lr = its initial lr × ``WarmupCosine(step)``.

    Call ``scheduler.step()`` after each optimiser step. ``state_dict()`` / ``load_state_dict()``
    round-trip the position (``last_epoch``) and the schedule's parameters.
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(total_steps, warmup_steps, final_ratio)
    )
