"""Recompute BatchNorm running statistics over given batches ("precise BN").

During training a BatchNorm layer's running mean and variance follow the *training* views with a
momentum. When the encoder is then evaluated on differently distributed inputs (here: full-size,
unaugmented images after training on 20×20 augmented crops), those statistics are off. Wu &
Johnson (2021, "Rethinking 'Batch' in BatchNorm", §3: PreciseBN) recompute them as an equal-weight
average over many batches of the evaluation distribution; Touvron et al. (2019, "Fixing the
train-test resolution discrepancy") adapt them to the test resolution for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["recompute_bn_stats"]


def recompute_bn_stats(module: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace the running statistics of every BatchNorm layer in ``module`` by their average
    over ``batches`` (the layers' batch statistics, each batch weighted equally).

    The other layers run in evaluation mode (no dropout), without gradients; every layer's
    mode and momentum are restored afterwards. Layers without running statistics are skipped.

    Args:
        module: a network with BatchNorm layers; it is called as ``module(batch)``.
        batches: input batches, e.g. float images (B, C, H, W) with B >= 2.

    Returns:
        The number of samples seen (0, and nothing changed, if ``module`` has no BatchNorm).

    Raises:
        ValueError: if ``batches`` is empty or a batch has fewer than 2 samples; the running
            statistics are then left as they were.
    """
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return 0
    modes = {m: m.training for m in module.modules()}
    saved = [
        (m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())  # type: ignore[union-attr]
        for m in norms
    ]
    seen = 0
    try:
        module.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: every batch weighs the same
            m.train()
        with torch.no_grad():
            for batch in batches:
                if batch.shape[0] < 2:
                    raise ValueError(
                        f"every batch needs >= 2 samples for batch statistics, got {tuple(batch.shape)}"
                    )
                module(batch)
                seen += int(batch.shape[0])
        if seen == 0:
            raise ValueError("batches is empty: no statistics to recompute")
    except BaseException:
        with torch.no_grad():
            for m, (_, mean, var, count) in zip(norms, saved, strict=True):
                m.running_mean.copy_(mean)  # type: ignore[union-attr]
                m.running_var.copy_(var)  # type: ignore[union-attr]
                m.num_batches_tracked.copy_(count)  # type: ignore[union-attr]
        raise
    finally:
        for m, (momentum, *_rest) in zip(norms, saved, strict=True):
            m.momentum = momentum
        for layer, training in modes.items():
            layer.training = training
    return seen
