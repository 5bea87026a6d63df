"""MoCo v2 (He et al. 2020; Chen et al. 2020): a momentum key encoder and a queue of keys.

Per step: the key encoder is first moved towards the query encoder by EMA (no gradient), keys are
computed without gradient, and the loss contrasts each query with its key and the queue. The
queue changes only in :meth:`MoCo.after_optimizer_step`, the explicit enqueue after the optimiser
step: an evaluation forward (``encode``) never touches the queue or the key encoder.

Shuffle BN (He et al. 2020, §3.3) on one device: with ``bn_groups`` G > 1 the encoders' BatchNorm
layers take their statistics over G sub-batches of each view (B/G images, as on G devices;
``contrastlab.nn.SplitBatchNorm2d``, one pass over the batch); the
queries' sub-batches are contiguous and the keys' are drawn from a random permutation of the
batch, so that a query and its positive key are normalised with different statistics. Without it
(G = 1, the default) the positive key shares the query's batch statistics while the queued
negatives do not, the leak the paper's shuffle BN closes. On the ten-minute Fashion-MNIST
benchmark G = 4 was level with G = 1 (three seeds; the twenty-fourth round of
``benchmarks/training/README.md``), so the default stays 1.

The registry builds MoCo v2 with the one-directional loss, as published
(``contrastlab.methods.SYMMETRIC``); ``symmetric=True``, this class's own default, uses both views
as queries, as in MoCo v3 and solo-learn's "MoCo v2+".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from contrastlab.losses import moco_info_nce
from contrastlab.methods.base import Method, StepOutput
from contrastlab.nn import (
    FeatureQueue,
    convert_split_batch_norm,
    copy_frozen,
    ema_update,
    split_batch_norm,
)
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
        symmetric: use both views as queries (default True here; the registry's default for
            MoCo v2 is one-directional, ``contrastlab.methods.SYMMETRIC``).
        temperature_lr: learning rate of a learnable τ.
        proj_dim: width of the head's output (the queue's keys).
        bn_groups: G, the sub-batches of shuffle BN (1 = BatchNorm over the whole batch); the
            batch size must be a multiple of G.
    """

    name: ClassVar[str] = "moco"
    max_views: ClassVar[int | None] = 2

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
        bn_groups: int = 1,
    ) -> None:
        super().__init__(backbone, feat_dim)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if bn_groups < 1:
            raise ValueError(f"bn_groups must be >= 1, got {bn_groups}")
        if bn_groups > 1:  # before the key encoder is copied, so that it is converted too
            convert_split_batch_norm(backbone)
            convert_split_batch_norm(head)
        self.head = head
        self.key_backbone = copy_frozen(backbone)
        self.key_head = copy_frozen(head)
        self.queue = FeatureQueue(queue_size, proj_dim, with_labels=supervised)
        self.tau_policy = temperature
        self.momentum = float(momentum)
        self.supervised = supervised
        self.symmetric = symmetric
        self.temperature_lr = temperature_lr
        self.bn_groups = int(bn_groups)
        self._pending: tuple[Tensor, Tensor | None] | None = None

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        return self.supervised

    @property
    def temperature(self) -> TemperaturePolicy | None:
        return self.tau_policy

    def _in_groups(
        self, fn: Callable[[Tensor], Tensor], x: Tensor, n_views: int, *, shuffle: bool
    ) -> Tensor:
        """``fn`` over the (n_views·B, ...) stack ``x`` with BatchNorm statistics over groups of
        B/G consecutive rows, each within one view; with ``shuffle``, over groups of a random
        permutation of each view's rows, put back in order after. Outside training (BN then
        uses its running statistics) a plain call."""
        g = self.bn_groups
        if g == 1 or not self.training:
            return fn(x)
        b = x.shape[0] // n_views
        perm = (
            torch.cat([v * b + torch.randperm(b, device=x.device) for v in range(n_views)])
            if shuffle
            else None
        )
        with split_batch_norm(self, b // g):
            out = fn(x if perm is None else x[perm])
        return out if perm is None else out[torch.argsort(perm)]

    def _query(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.backbone(x))
        return out

    def _key(self, x: Tensor) -> Tensor:
        out: Tensor = self.key_head(self.key_backbone(x))
        return out

    @torch.no_grad()
    def _keys(self, x: Tensor, n_views: int) -> Tensor:
        self.key_backbone.train(self.training)
        self.key_head.train(self.training)
        return normalize(self._in_groups(self._key, x, n_views, shuffle=True).float())

    def training_step(
        self, views: list[Tensor], labels: Tensor | None, *, step: int, progress: float
    ) -> StepOutput:
        self.check_views(views, labels)
        b, g = views[0].shape[0], self.bn_groups
        if self.queue.size % b != 0:
            raise ValueError(
                f"queue_size ({self.queue.size}) must be a multiple of the batch size ({b})"
            )
        if self.training and g > 1 and (b % g != 0 or b // g < 2):  # checked before the EMA moves
            raise ValueError(
                f"the batch size ({b}) must be a multiple of bn_groups ({g}) with at least 2 "
                "images per group"
            )
        ema_update(self.key_backbone, self.backbone, self.momentum)
        ema_update(self.key_head, self.head, self.momentum)
        n_views = 2 if self.symmetric else 1
        x = self.stack_views(views[:2]) if self.symmetric else views[0]
        q = self._in_groups(self._query, x, n_views, shuffle=False).float()
        k = self._keys(self.stack_views(views[:2][::-1]) if self.symmetric else views[1], n_views)
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
