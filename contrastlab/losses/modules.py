"""Thin ``nn.Module`` wrappers: they hold a temperature policy (so a learnable τ is a parameter of
the module) and the loss options; ``forward`` calls the stateless function."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from contrastlab.losses._common import Reduction
from contrastlab.losses.info_nce import hard_nt_xent, nt_xent
from contrastlab.losses.moco import moco_info_nce
from contrastlab.losses.regression import align_uniform_loss, byol_loss
from contrastlab.losses.simple import hard_simple_loss, simple_loss
from contrastlab.losses.supcon import supcon
from contrastlab.ops import Backend, Variant
from contrastlab.temperature import TemperatureLike, as_policy

__all__ = [
    "AlignUniformLoss",
    "BYOLLoss",
    "HardNTXentLoss",
    "HardSimpleLoss",
    "MoCoLoss",
    "NTXentLoss",
    "SimpleLoss",
    "SupConLoss",
]


class _TemperatureLoss(nn.Module):
    def __init__(
        self, temperature: TemperatureLike, reduction: Reduction, backend: Backend
    ) -> None:
        super().__init__()
        self.temperature = as_policy(temperature)
        self.reduction: Reduction = reduction
        self.backend: Backend = backend


class NTXentLoss(_TemperatureLoss):
    """Module form of :func:`contrastlab.losses.nt_xent`. ``forward(z1, z2, negatives=None, step=None)``."""

    def __init__(
        self,
        temperature: TemperatureLike = 0.5,
        reduction: Reduction = "mean",
        backend: Backend = "auto",
    ) -> None:
        super().__init__(temperature, reduction, backend)

    def forward(
        self, z1: Tensor, z2: Tensor, negatives: Tensor | None = None, step: int | None = None
    ) -> Tensor:
        return nt_xent(
            z1,
            z2,
            self.temperature,
            negatives=negatives,
            reduction=self.reduction,
            step=step,
            backend=self.backend,
        )


class HardNTXentLoss(_TemperatureLoss):
    """Module form of :func:`contrastlab.losses.hard_nt_xent` (give ``top_k`` or ``alpha``)."""

    def __init__(
        self,
        temperature: TemperatureLike = 0.5,
        top_k: int | None = None,
        alpha: float | None = None,
        reduction: Reduction = "mean",
        backend: Backend = "auto",
    ) -> None:
        super().__init__(temperature, reduction, backend)
        if (top_k is None) == (alpha is None):
            raise ValueError("give exactly one of top_k and alpha")
        self.top_k, self.alpha = top_k, alpha

    def forward(
        self, z1: Tensor, z2: Tensor, negatives: Tensor | None = None, step: int | None = None
    ) -> Tensor:
        return hard_nt_xent(
            z1,
            z2,
            self.temperature,
            top_k=self.top_k,
            alpha=self.alpha,
            negatives=negatives,
            reduction=self.reduction,
            step=step,
            backend=self.backend,
        )


class SupConLoss(_TemperatureLoss):
    """Module form of :func:`contrastlab.losses.supcon`. ``forward(features, labels=None, mask=None, step=None)``."""

    def __init__(
        self,
        temperature: TemperatureLike = 0.1,
        variant: Variant = "out",
        contrast_mode: Literal["all", "one"] = "all",
        base_temperature: float | None = None,
        reduction: Reduction = "mean",
        backend: Backend = "auto",
    ) -> None:
        super().__init__(temperature, reduction, backend)
        self.variant: Variant = variant
        self.contrast_mode: Literal["all", "one"] = contrast_mode
        self.base_temperature = base_temperature

    def forward(
        self,
        features: Tensor,
        labels: Tensor | None = None,
        mask: Tensor | None = None,
        step: int | None = None,
    ) -> Tensor:
        return supcon(
            features,
            labels,
            mask,
            self.temperature,
            variant=self.variant,
            contrast_mode=self.contrast_mode,
            reduction=self.reduction,
            base_temperature=self.base_temperature,
            step=step,
            backend=self.backend,
        )


class MoCoLoss(_TemperatureLoss):
    """Module form of :func:`contrastlab.losses.moco_info_nce`; the queue is passed in, not owned."""

    def __init__(
        self,
        temperature: TemperatureLike = 0.2,
        reduction: Reduction = "mean",
        backend: Backend = "auto",
    ) -> None:
        super().__init__(temperature, reduction, backend)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        queue: Tensor,
        queue_labels: Tensor | None = None,
        labels: Tensor | None = None,
        step: int | None = None,
    ) -> Tensor:
        return moco_info_nce(
            q,
            k,
            queue,
            self.temperature,
            queue_labels=queue_labels,
            labels=labels,
            reduction=self.reduction,
            step=step,
            backend=self.backend,
        )


class SimpleLoss(nn.Module):
    """Module form of :func:`contrastlab.losses.simple_loss`."""

    def __init__(self, lam: float | None = None, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.lam, self.reduction = lam, reduction

    def forward(self, z1: Tensor, z2: Tensor, negatives: Tensor | None = None) -> Tensor:
        return simple_loss(z1, z2, self.lam, negatives=negatives, reduction=self.reduction)


class HardSimpleLoss(nn.Module):
    """Module form of :func:`contrastlab.losses.hard_simple_loss`."""

    def __init__(
        self,
        lam: float | None = None,
        top_k: int | None = None,
        alpha: float | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        if (top_k is None) == (alpha is None):
            raise ValueError("give exactly one of top_k and alpha")
        self.lam, self.top_k, self.alpha, self.reduction = lam, top_k, alpha, reduction

    def forward(self, z1: Tensor, z2: Tensor, negatives: Tensor | None = None) -> Tensor:
        return hard_simple_loss(
            z1,
            z2,
            self.lam,
            self.top_k,
            alpha=self.alpha,
            negatives=negatives,
            reduction=self.reduction,
        )


class BYOLLoss(nn.Module):
    """Symmetrised BYOL loss: ``forward(p1, p2, z1, z2) = byol(p1, z2) + byol(p2, z1)``."""

    def forward(self, p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
        return byol_loss(p1, z2) + byol_loss(p2, z1)


class AlignUniformLoss(nn.Module):
    """Module form of :func:`contrastlab.losses.align_uniform_loss`."""

    def __init__(
        self,
        align_weight: float = 1.0,
        unif_weight: float = 1.0,
        alpha: float = 2.0,
        t: float = 2.0,
    ) -> None:
        super().__init__()
        self.align_weight, self.unif_weight, self.alpha, self.t = (
            align_weight,
            unif_weight,
            alpha,
            t,
        )

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return align_uniform_loss(
            z1,
            z2,
            align_weight=self.align_weight,
            unif_weight=self.unif_weight,
            alpha=self.alpha,
            t=self.t,
        )
