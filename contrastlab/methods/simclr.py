"""SimCLR (Chen et al. 2020): encoder + 2-layer projection head + NT-Xent.

The loss is any pair loss of the NT-Xent family chosen by name — ``nt_xent`` (default),
``hard_nt_xent``, ``simple``, ``hard_simple``, ``align_uniform`` — with any temperature policy,
which is what the temperature study sweeps. With V > 2 views ``nt_xent`` becomes the multi-view
NT-Xent (every other view of the same image is a positive).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from contrastlab.losses import (
    align_uniform_loss,
    hard_nt_xent,
    hard_simple_loss,
    multiview_nt_xent,
    nt_xent,
    simple_loss,
)
from contrastlab.methods.base import Method, StepOutput
from contrastlab.ops import normalize
from contrastlab.temperature import TemperaturePolicy

__all__ = ["PAIR_LOSSES", "SimCLR"]

#: Pair losses SimCLR can train with, and whether they take a temperature.
PAIR_LOSSES: dict[str, bool] = {
    "nt_xent": True,
    "hard_nt_xent": True,
    "simple": False,
    "hard_simple": False,
    "align_uniform": False,
}


class SimCLR(Method):
    """SimCLR with a pluggable pair loss and temperature policy.

    Args:
        backbone: images ``(B, C, H, W)`` → features ``(B, feat_dim)``.
        feat_dim: backbone output size.
        head: projection head, ``(B, feat_dim)`` → ``(B, D)``.
        temperature: the policy (ignored by losses without τ).
        loss: one of :data:`PAIR_LOSSES`.
        loss_options: extra keyword arguments of the loss (``top_k``/``alpha`` for the hard
            losses, ``lam`` for the simple ones).
        temperature_lr: learning rate of a :class:`Learnable` τ (None: the main one).
    """

    name: ClassVar[str] = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        head: nn.Module,
        temperature: TemperaturePolicy,
        loss: str = "nt_xent",
        loss_options: dict[str, Any] | None = None,
        temperature_lr: float | None = None,
    ) -> None:
        super().__init__(backbone, feat_dim)
        if loss not in PAIR_LOSSES:
            raise ValueError(
                f"loss must be one of {', '.join(PAIR_LOSSES)} for SimCLR, got {loss!r}"
            )
        self.head = head
        self.tau_policy = temperature
        self.loss_name = loss
        self.loss_options = dict(loss_options or {})
        self.temperature_lr = temperature_lr

    @property
    def temperature(self) -> TemperaturePolicy | None:
        return self.tau_policy if PAIR_LOSSES[self.loss_name] else None

    def _loss(self, z: Tensor, step: int) -> Tensor:
        """``z``: ``(V, B, D)`` projections."""
        name, opts = self.loss_name, self.loss_options
        if z.shape[0] > 2:
            if name != "nt_xent":
                raise ValueError(f"loss {name!r} takes exactly 2 views; use nt_xent for V > 2")
            return multiview_nt_xent(z.transpose(0, 1), self.tau_policy, step=step)
        z1, z2 = z[0], z[1]
        if name == "nt_xent":
            return nt_xent(z1, z2, self.tau_policy, step=step)
        if name == "hard_nt_xent":
            return hard_nt_xent(z1, z2, self.tau_policy, step=step, **opts)
        if name == "simple":
            return simple_loss(z1, z2, **opts)
        if name == "hard_simple":
            return hard_simple_loss(z1, z2, **opts)
        return align_uniform_loss(z1, z2, **opts)

    def training_step(
        self, views: list[Tensor], labels: Tensor | None, *, step: int, progress: float
    ) -> StepOutput:
        self.check_views(views, labels)
        b = views[0].shape[0]
        z = self.head(self.backbone(self.stack_views(views)))
        z = z.float().reshape(len(views), b, -1)
        loss = self._loss(z, step)
        return StepOutput(loss=loss, embeddings=normalize(z.detach()).transpose(0, 1))
