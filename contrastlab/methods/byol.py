"""BYOL (Grill et al. 2020): online encoder + projector + predictor regress the target network.

The target (backbone + projector) is an EMA of the online network with the cosine momentum
schedule ``τ_k = 1 − (1 − τ_base)(cos(π k/K) + 1)/2`` (τ_base 0.996; 0.99 for short runs),
updated after each optimiser step. No temperature, no negatives.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from contrastlab.losses import byol_loss
from contrastlab.methods.base import Method, StepOutput
from contrastlab.nn import byol_momentum, copy_frozen, ema_update
from contrastlab.ops import normalize

__all__ = ["BYOL"]


class BYOL(Method):
    """BYOL with a symmetrised loss ``byol(p1, z2') + byol(p2, z1')`` (as in the paper).

    Args:
        backbone, feat_dim: the online encoder.
        projector: ``(B, feat_dim)`` → ``(B, D)``; predictor: ``(B, D)`` → ``(B, D)``.
        base_momentum: τ_base of the EMA schedule.
        symmetric: False keeps only ``byol(p1, z2')``: view 0 through the online network and
            view 1 through the target, half the compute per image.
        predictor_lr_scale: the predictor's learning rate as a multiple of the scheduled one.
            SimSiam (Chen & He 2021, §4.2) found that a predictor which adapts faster than the
            encoders helps, since the regression target moves; 1 (default) trains it like the rest.
    """

    name: ClassVar[str] = "byol"
    max_views: ClassVar[int | None] = 2

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        projector: nn.Module,
        predictor: nn.Module,
        base_momentum: float = 0.99,
        symmetric: bool = True,
        predictor_lr_scale: float = 1.0,
    ) -> None:
        super().__init__(backbone, feat_dim)
        if not 0.0 <= base_momentum < 1.0:
            raise ValueError(f"base_momentum must be in [0, 1), got {base_momentum}")
        if not predictor_lr_scale > 0:
            raise ValueError(f"predictor_lr_scale must be > 0, got {predictor_lr_scale}")
        self.projector = projector
        self.predictor = predictor
        self.target_backbone = copy_frozen(backbone)
        self.target_projector = copy_frozen(projector)
        self.base_momentum = float(base_momentum)
        self.symmetric = symmetric
        self.predictor_lr_scale = float(predictor_lr_scale)

    def project_features(self, feats: Tensor) -> Tensor:
        """Online projections ``(B, D)`` of backbone features ``(B, F)`` (before the predictor)."""
        out: Tensor = self.projector(feats)
        return out

    def training_step(
        self, views: list[Tensor], labels: Tensor | None, *, step: int, progress: float
    ) -> StepOutput:
        self.check_views(views, labels)
        b = views[0].shape[0]
        x = self.stack_views(views[:2]) if self.symmetric else views[0]
        z_online = self.projector(self.backbone(x))
        p = self.predictor(z_online).float()
        with torch.no_grad():
            self.target_backbone.train(self.training)
            self.target_projector.train(self.training)
            x_target = x if self.symmetric else views[1]
            z_target = self.target_projector(self.target_backbone(x_target)).float()
        if not self.symmetric:
            return StepOutput(loss=byol_loss(p, z_target))
        # Each online view regresses the target of the other view.
        loss = byol_loss(p[:b], z_target[b:]) + byol_loss(p[b:], z_target[:b])
        emb = normalize(z_online.detach().float().reshape(2, b, -1).transpose(0, 1))
        return StepOutput(loss=loss, embeddings=emb)

    def lr_scales(self) -> list[tuple[list[nn.Parameter], float]]:
        """The predictor's parameters with ``predictor_lr_scale`` (nothing when it is 1)."""
        if self.predictor_lr_scale == 1.0:
            return []
        return [(list(self.predictor.parameters()), self.predictor_lr_scale)]

    def after_optimizer_step(self, *, step: int, progress: float) -> None:
        """Move the target towards the online network with the cosine momentum schedule."""
        m = byol_momentum(round(progress * 1_000_000), 1_000_000, self.base_momentum)
        ema_update(self.target_backbone, self.backbone, m)
        ema_update(self.target_projector, self.projector, m)
