"""A FIFO feature queue (MoCo's dictionary of negatives, He et al. 2020 §3.2).

The queue changes ONLY through an explicit ``enqueue(keys, labels)`` call: reading it (``valid()``,
the ``features`` buffer, ``forward``) never changes it, so an evaluation pass cannot corrupt it
(the reference MoCo forward enqueues as a side effect; we do not).

State (all registered buffers, hence saved in ``state_dict`` / checkpoints):
    features (K, D) float32 — initialised with random unit vectors, as MoCo does;
    labels   (K,)   int64   — -1 where unknown (only when ``with_labels``);
    ptr      ()     int64   — next write position;
    filled   ()     int64   — number of entries written so far, capped at K.

Wrap-around: MoCo requires K to be a multiple of the (global) batch so that a batch never straddles
the end. ``enqueue`` handles the general case anyway: a batch that crosses the end is split, its
tail written at the start; a batch larger than K keeps only its last K rows (the newest).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FeatureQueue"]


class FeatureQueue(nn.Module):
    """FIFO queue of K feature vectors of size D, optionally with labels.

    Args:
        size: capacity K (≥ 1).
        dim: feature size D (≥ 1).
        with_labels: keep an int64 label per entry (SupCon-style queues).

    Raises:
        ValueError: on a non-positive ``size`` or ``dim``.
    """

    features: Tensor
    labels: Tensor
    ptr: Tensor
    filled: Tensor

    def __init__(self, size: int, dim: int, with_labels: bool = False) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.size, self.dim, self.with_labels = size, dim, with_labels
        init = torch.nn.functional.normalize(torch.randn(size, dim), dim=1)
        self.register_buffer("features", init)
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.filled)

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor | None = None) -> None:
        """Write ``keys`` (B, D) (and ``labels`` (B,)) at the pointer and advance it modulo K.

        Keys are detached and cast to the queue dtype; the caller normalises them if needed.

        Raises:
            ValueError: if ``keys`` is not (B, D); if ``labels`` is given without
                ``with_labels``, is missing with ``with_labels``, or is not (B,).
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (B, {self.dim}), got {tuple(keys.shape)}")
        if labels is not None and not self.with_labels:
            raise ValueError("labels given but the queue was built with with_labels=False")
        if self.with_labels:
            if labels is None:
                raise ValueError("labels (B,) are required: the queue has with_labels=True")
            if labels.shape != (keys.shape[0],):
                raise ValueError(
                    f"labels must have shape ({keys.shape[0]},), got {tuple(labels.shape)}"
                )
        keys = keys.detach().to(self.features.dtype)
        if labels is not None:
            labels = labels.detach().to(torch.long)
        b = keys.shape[0]
        if b == 0:
            return
        k = self.size
        if b > k:  # only the newest K survive
            keys = keys[b - k :]
            labels = labels[b - k :] if labels is not None else None
            start = (int(self.ptr) + b - k) % k
            b = k
        else:
            start = int(self.ptr)
        idx = (torch.arange(b, device=self.features.device) + start) % k
        self.features.index_copy_(0, idx, keys.to(self.features.device))
        if labels is not None:
            self.labels.index_copy_(0, idx, labels.to(self.labels.device))
        self.ptr.fill_((start + b) % k)
        self.filled.fill_(min(int(self.filled) + b, k))

    def valid(self) -> tuple[Tensor, Tensor | None]:
        """The filled entries: features (n, D) and labels (n,) or None, n = ``len(self)``.

        Entries are in storage order, not age order. Returns views; do not modify them.
        """
        n = int(self.filled)
        feats = self.features if n == self.size else self.features[:n]
        labels = None
        if self.with_labels:
            labels = self.labels if n == self.size else self.labels[:n]
        return feats, labels

    def forward(self) -> Tensor:
        """All K features (K, D), including the random initial ones (MoCo reads the full queue)."""
        return self.features

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, with_labels={self.with_labels}"
