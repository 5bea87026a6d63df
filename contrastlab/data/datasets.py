"""The dataset container: one uint8 image tensor plus int64 labels, sliced by index.

The whole dataset lives in one tensor (N, C, H, W) on one device; a batch is an index gather,
so the training loop runs no per-sample Python. Augmentation happens afterwards, on the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from contrastlab.data.stats import compute_mean_std


class ImageDataset:
    """Images, labels and metadata of one split of a dataset.

    Attributes:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,), -1 where unlabeled.
        classes: class names; ``labels`` index into it.
        name: dataset name, e.g. "fashion-mnist".
        split: split name, e.g. "train".
        mean, std: per-channel statistics in [0, 1] units (of the training split for the
            published datasets, so train and test are normalised alike).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[str],
        name: str,
        split: str = "train",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        """Validate and hold the tensors; mean/std are computed from ``images`` if None.

        Raises:
            ValueError: if ``images`` is not uint8 (N, C, H, W), ``labels`` not int64 (N,),
                or mean/std do not have C entries.
        """
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must be int64 of shape ({images.shape[0]},), got {labels.dtype} "
                f"{tuple(labels.shape)}"
            )
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        channels = images.shape[1]
        if mean is None or std is None:  # no images: the identity normalisation, per channel
            mean, std = (
                compute_mean_std(images)
                if images.shape[0]
                else ((0.0,) * channels, (1.0,) * channels)
            )
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} entries, got {len(mean)}, {len(std)}")
        self.images = images
        self.labels = labels
        self.classes = tuple(classes)
        self.name = name
        self.split = split
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, "
            f"images={tuple(self.images.shape)}, classes={len(self.classes)}, "
            f"device={self.images.device})"
        )

    @property
    def device(self) -> torch.device:
        """The device holding the tensors."""
        return self.images.device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def is_labeled(self) -> bool:
        """True if every sample has a label (none is -1)."""
        return bool((self.labels >= 0).all()) if len(self) else False

    def subset(self, index: torch.Tensor, split: str | None = None) -> ImageDataset:
        """A new dataset of the samples at ``index`` (int64 (M,) or bool (N,)); same stats."""
        index = index.to(self.images.device)
        return ImageDataset(
            self.images[index],
            self.labels[index],
            self.classes,
            self.name,
            split if split is not None else self.split,
            self.mean,
            self.std,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageDataset:
        """The same dataset with its tensors on ``device`` (moved once, before training)."""
        return ImageDataset(
            self.images.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.classes,
            self.name,
            self.split,
            self.mean,
            self.std,
        )

    def batch_indices(
        self,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[torch.Tensor]:
        """Yield int64 index tensors (batch_size,) covering one epoch, on the data's device.

        The permutation is drawn on the CPU from ``generator`` (global RNG if None), so it is
        reproducible across devices.

        Raises:
            ValueError: if ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.images.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield order[start : start + batch_size]

    def batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)`` batches: uint8 (B, C, H, W) and int64 (B,).

        See :meth:`batch_indices` for the arguments.
        """
        for index in self.batch_indices(batch_size, shuffle, generator, drop_last):
            yield self.images[index], self.labels[index]

    def split_validation(self, fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Split off a seeded validation set, stratified by label when labeled.

        Args:
            fraction: share of samples (per class when labeled) for validation, in (0, 1).
            seed: seed of the permutation; the same seed gives the same split.

        Returns:
            ``(train, validation)`` datasets (splits "train" and "val"), disjoint, covering all
            samples, both keeping this dataset's mean and std.

        Raises:
            ValueError: if ``fraction`` is not in (0, 1).
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        generator = torch.Generator().manual_seed(seed)
        labels = self.labels.cpu()
        perm = torch.randperm(len(self), generator=generator)
        groups = [perm[labels[perm] == c] for c in labels.unique()] if len(self) else [perm]
        val_parts, train_parts = [], []
        for group in groups:
            k = round(fraction * group.numel())
            val_parts.append(group[:k])
            train_parts.append(group[k:])
        val_index = torch.cat(val_parts).sort().values
        train_index = torch.cat(train_parts).sort().values
        return self.subset(train_index, "train"), self.subset(val_index, "val")
