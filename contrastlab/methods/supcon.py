"""SupCon (Khosla et al. 2020), stage one: encoder + projection head trained with ``supcon``.

Stage two is the linear probe on the frozen encoder (``contrastlab.eval``), which the training
loop runs at the end of every run.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from contrastlab.losses import supcon
from contrastlab.methods.base import Method, StepOutput
from contrastlab.ops import Variant, normalize
from contrastlab.temperature import TemperaturePolicy

__all__ = ["SupCon"]


class SupCon(Method):
    """Supervised contrastive learning over V ≥ 2 views (L_out by default).

    Args:
        backbone, feat_dim, head: as :class:`~contrastlab.methods.SimCLR`.
        temperature: the policy (0.1 in the paper).
        variant: ``"out"`` (recommended) or ``"in"``.
        temperature_lr: learning rate of a learnable τ.
    """

    name: ClassVar[str] = "supcon"
    needs_labels: ClassVar[bool] = True

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        head: nn.Module,
        temperature: TemperaturePolicy,
        variant: Variant = "out",
        temperature_lr: float | None = None,
    ) -> None:
        super().__init__(backbone, feat_dim)
        self.head = head
        self.tau_policy = temperature
        self.variant: Variant = variant
        self.temperature_lr = temperature_lr

    @property
    def temperature(self) -> TemperaturePolicy | None:
        return self.tau_policy

    def training_step(
        self, views: list[Tensor], labels: Tensor | None, *, step: int, progress: float
    ) -> StepOutput:
        self.check_views(views, labels)
        b = views[0].shape[0]
        z = self.head(self.backbone(self.stack_views(views))).float()
        feats = z.reshape(len(views), b, -1).transpose(0, 1)  # (B, V, D)
        loss = supcon(feats, labels, temperature=self.tau_policy, variant=self.variant, step=step)
        return StepOutput(loss=loss, embeddings=normalize(feats.detach()))
