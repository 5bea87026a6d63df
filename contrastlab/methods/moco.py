"""MoCo v2 (He et al. 2020; Chen et al. 2020): a momentum key encoder and a queue of keys.

Per step: the key encoder is first moved towards the query encoder by EMA (no gradient), keys are
computed without gradient, and the loss contrasts each query with its key and the queue. The
queue changes only in :meth:`MoCo.after_optimizer_step`, the explicit enqueue after the optimiser
step: an evaluation forward (``encode``) never touches the queue or the key encoder.

Differences from the paper, stated: the loss is symmetrised over the two views by default (both
views serve as queries, as in MoCo v3 and solo-learn's "MoCo v2+"), and there is no shuffle-BN on
one device (the key encoder's BN sees the same batch as the query's; shuffle-BN needs several
processes).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from contrastlab.losses import moco_info_nce
from contrastlab.methods.base import Method, StepOutput
from contrastlab.nn import FeatureQueue, copy_frozen, ema_update
from contrastlab.ops import normalize
from contrastlab.temperature import TemperaturePolicy

__all__ = ["MoCo"]


class MoCo(Method):
    """MoCo v2 with an optional label-aware queue (supervised MoCo).

    Args:
        backbone, feat_dim, head: the query encoder (the key encoder is a frozen copy).
        temperature: the policy (0.2 for v2).
        queue_size: K, the number of queued keys (a multiple of the batch size).
        momentum: EMA coefficient m of the key encoder (0.999 in the paper for long runs).
        supervised: also queue labels, and treat same-class queue entries as positives.
        symmetric: use both views as queries (default True).
        temperature_lr: learning rate of a learnable τ.
    """

    name: ClassVar[str] = "moco"

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        head: nn.Module,
        temperature: TemperaturePolicy,
        queue_size: int = 4096,
        momentum: float = 0.99,
        supervised: bool = False,
        symmetric: bool = True,
        temperature_lr: float | None = None,
        proj_dim: int = 128,
    ) -> None:
        super().__init__(backbone, feat_dim)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.head = head
        self.key_backbone = copy_frozen(backbone)
        self.key_head = copy_frozen(head)
        self.queue = FeatureQueue(queue_size, proj_dim, with_labels=supervised)
        self.tau_policy = temperature
        self.momentum = float(momentum)
        self.supervised = supervised
        self.symmetric = symmetric
        self.temperature_lr = temperature_lr
        self._pending: tuple[Tensor, Tensor | None] | None = None

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        return self.supervised

    @property
    def temperature(self) -> TemperaturePolicy | None:
        return self.tau_policy

    @torch.no_grad()
    def _keys(self, x: Tensor) -> Tensor:
        self.key_backbone.train(self.training)
        self.key_head.train(self.training)
        return normalize(self.key_head(self.key_backbone(x)).float())

    def training_step(
        self, views: list[Tensor], labels: Tensor | None, *, step: int, progress: float
    ) -> StepOutput:
        self.check_views(views, labels)
        if self.queue.size % views[0].shape[0] != 0:
            raise ValueError(
                f"queue_size ({self.queue.size}) must be a multiple of the batch size ({views[0].shape[0]})"
            )
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_head, self.head, self.momentum)
        b = views[0].shape[0]
        x = self.stack_views(views[:2]) if self.symmetric else views[0]
        q = self.head(self.backbone(x)).float()
        k = self._keys(self.stack_views(views[:2][::-1]) if self.symmetric else views[1])
        sup_labels = queue_labels = None
        if self.supervised:
            assert labels is not None
            sup_labels = labels.repeat(2) if self.symmetric else labels
            queue_labels = self.queue.labels  # −1 for slots not written yet: never positives
        # Unwritten slots hold random unit vectors (as in MoCo), so they serve as negatives.
        loss = moco_info_nce(
            q,
            k,
            self.queue.features,
            self.tau_policy,
            labels=sup_labels,
            queue_labels=queue_labels,
            step=step,
        )
        # The keys of view 1 (and 0) wait for the explicit enqueue after the optimiser step.
        self._pending = (k[:b].detach(), labels)
        emb = (
            normalize(q.detach()[: 2 * b].reshape(2, b, -1).transpose(0, 1))
            if self.symmetric
            else None
        )
        return StepOutput(
            loss=loss, logs={"queue_filled": float(self.queue.filled)}, embeddings=emb
        )

    def after_optimizer_step(self, *, step: int, progress: float) -> None:
        """Enqueue the keys of the step just taken (the only place the queue changes)."""
        if self._pending is None:
            return
        keys, labels = self._pending
        self.queue.enqueue(keys, labels if self.supervised else None)
        self._pending = None
