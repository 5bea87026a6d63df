"""What every method shares: an encoder, a training step returning (loss, logs), explicit hooks.

A method owns its state (heads, key/target encoders, queue, temperature policy). The training
loop calls, per step::

    out = method.training_step(views, labels, step=..., progress=...)
    out.loss.backward(); optimizer.step()
    method.after_optimizer_step(step=..., progress=...)   # EMA targets, enqueue

``method.encode(images)`` is the evaluation forward: backbone features only; it never touches a
queue or a momentum encoder, and in eval mode it changes nothing (in train mode, BatchNorm
updates its running statistics as in any forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from contrastlab.temperature import Learnable, TemperaturePolicy

__all__ = ["Method", "StepOutput"]


@dataclass
class StepOutput:
    """Result of one training step.

    Attributes:
        loss: scalar loss to back-propagate.
        logs: scalar values to log (floats).
        embeddings: ``(N, V, D)`` detached, normalised projections of the views (for diagnostics).
    """

    loss: Tensor
    logs: dict[str, float] = field(default_factory=dict)
    embeddings: Tensor | None = None


class Method(nn.Module):
    """Base class: ``backbone`` maps images ``(B, C, H, W)`` to features ``(B, F)``.

    Subclasses set ``name``, ``needs_labels`` and implement :meth:`training_step`.
    """

    name: ClassVar[str] = "method"
    needs_labels: ClassVar[bool] = False
    min_views: ClassVar[int] = 2
    #: the most views the loss uses (None: any number); more are refused, not ignored.
    max_views: ClassVar[int | None] = None

    def __init__(self, backbone: nn.Module, feat_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feat_dim = int(feat_dim)

    @property
    def temperature(self) -> TemperaturePolicy | None:
        """The method's temperature policy, if its loss has one."""
        return None

    def encode(self, images: Tensor) -> Tensor:
        """Backbone features ``(B, F)`` for evaluation (no head; call it in eval mode for no
        state change)."""
        out: Tensor = self.backbone(images)
        return out

    def project(self, images: Tensor) -> Tensor:
        """Embeddings in the loss space ``(B, D)`` (backbone + projection head), unnormalised.

        No side effects in eval mode (the diagnostics call it so).
        """
        return self.project_features(self.backbone(images))

    def project_features(self, feats: Tensor) -> Tensor:
        """The projection head alone: backbone features ``(B, F)`` → ``(B, D)``, unnormalised.

        The default applies the method's ``head``; a method without one overrides this (or
        ``project``, which the diagnostics then call instead).
        """
        head = getattr(self, "head", None)
        if head is None:
            raise NotImplementedError(f"{type(self).__name__} must implement project_features()")
        out: Tensor = head(feats)
        return out

    def training_step(
        self, views: list[Tensor], labels: Tensor | None, *, step: int, progress: float
    ) -> StepOutput:
        """One step's loss on ``V`` augmented views, each ``(B, C, H, W)``.

        Args:
            views: the augmented views of one batch.
            labels: ``(B,)`` int64 labels (required when ``needs_labels``).
            step: global optimiser step (for scheduled temperatures).
            progress: fraction of training done in [0, 1] (for momentum schedules).
        """
        raise NotImplementedError

    def after_optimizer_step(self, *, step: int, progress: float) -> None:
        """Hook after ``optimizer.step()``: momentum updates, enqueueing. Default: nothing."""

    def check_views(self, views: list[Tensor], labels: Tensor | None) -> None:
        """Raise ``ValueError`` for too few or too many views, views of different batch sizes,
        a batch of one, or missing or misshapen labels."""
        if len(views) < self.min_views:
            raise ValueError(f"{self.name} needs at least {self.min_views} views, got {len(views)}")
        if self.max_views is not None and len(views) > self.max_views:
            raise ValueError(
                f"{self.name} uses {self.max_views} views, got {len(views)} (data.views)"
            )
        sizes = [int(v.shape[0]) for v in views]
        if len(set(sizes)) != 1:
            raise ValueError(f"views must share one batch size B, got {sizes}")
        if sizes[0] < 2:
            raise ValueError(
                f"{self.name} needs a batch of at least 2 images (BatchNorm statistics, in-batch "
                f"negatives), got {sizes[0]}"
            )
        if labels is not None and labels.shape != (sizes[0],):
            raise ValueError(f"labels must be ({sizes[0]},), got {tuple(labels.shape)}")
        if self.needs_labels and labels is None:
            raise ValueError(f"{self.name} needs labels: use a labelled dataset")
        if labels is not None and bool((labels < 0).any()) and self.needs_labels:
            raise ValueError(
                f"{self.name} needs labels, but the batch holds unlabeled samples (-1)"
            )

    def temperature_value(self, step: int) -> float | None:
        """Current τ for logging (None if the loss has no temperature)."""
        policy = self.temperature
        return None if policy is None else policy.value(step)

    #: learning rate of a learnable τ (None: the optimiser's).
    temperature_lr: float | None = None

    def extra_parameter_groups(self) -> list[dict[str, object]]:
        """Parameter groups with their own settings: a learnable τ (no weight decay, own lr, and
        outside LARS's trust ratio, like every other scalar and norm parameter)."""
        policy = self.temperature
        if not isinstance(policy, Learnable):
            return []
        group: dict[str, object] = {
            "params": [policy.log_scale],
            "weight_decay": 0.0,
            "lars_exclude": True,
        }
        if self.temperature_lr is not None:
            group["lr"] = self.temperature_lr
        return [group]

    def lr_scales(self) -> list[tuple[list[nn.Parameter], float]]:
        """Parameters whose learning rate is the schedule's times a factor, as (params, factor)
        pairs; the trainer gives them their own optimiser groups. Empty by default; BYOL lists its
        predictor when ``predictor_lr_scale`` ≠ 1."""
        return []

    @staticmethod
    def stack_views(views: list[Tensor]) -> Tensor:
        """Concatenate views ``V × (B, ...)`` into one ``(V·B, ...)`` batch for a single forward."""
        return torch.cat(views, dim=0)
