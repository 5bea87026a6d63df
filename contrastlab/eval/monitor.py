"""A cheap per-epoch kNN monitor on a fixed random subset of the data."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from contrastlab.eval.features import default_normalize, extract_features
from contrastlab.eval.knn import knn_accuracy

__all__ = ["KNNMonitor"]


def _subset(n: int, m: int | None, gen: torch.Generator) -> Tensor:
    if m is None or m >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:m].sort().values


class KNNMonitor:
    """Weighted-kNN top-1 (SPEC §9) of an encoder on fixed train/test subsets.

    The subsets are drawn once, from ``seed``, so successive epochs are comparable.

    Args:
        train_images, test_images: uint8 (N, C, H, W) / (M, C, H, W).
        train_labels, test_labels: (N,) / (M,) int labels.
        n_train, n_test: subset sizes (None: use everything).
        k, t: kNN neighbours and vote temperature.
        seed: subset selection seed (the global RNG is untouched).
        normalize_fn, batch_size, device, amp, channels_last: as ``extract_features``.

    Raises:
        ValueError: if labels do not match the image counts.
    """

    def __init__(
        self,
        train_images: Tensor,
        train_labels: Tensor,
        test_images: Tensor,
        test_labels: Tensor,
        *,
        n_train: int | None = 10_000,
        n_test: int | None = 2_000,
        k: int = 200,
        t: float = 0.1,
        seed: int = 0,
        normalize_fn: Callable[[Tensor], Tensor] = default_normalize,
        batch_size: int = 256,
        device: torch.device | str = "cpu",
        amp: bool | None = None,
        channels_last: bool = True,
    ) -> None:
        if train_labels.shape != (train_images.shape[0],):
            raise ValueError(
                f"train_labels must be ({train_images.shape[0]},), got {tuple(train_labels.shape)}"
            )
        if test_labels.shape != (test_images.shape[0],):
            raise ValueError(
                f"test_labels must be ({test_images.shape[0]},), got {tuple(test_labels.shape)}"
            )
        gen = torch.Generator().manual_seed(seed)
        tr = _subset(train_images.shape[0], n_train, gen)
        te = _subset(test_images.shape[0], n_test, gen)
        self.train_images, self.train_labels = train_images[tr], train_labels[tr].long()
        self.test_images, self.test_labels = test_images[te], test_labels[te].long()
        self.num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
        self.k, self.t = k, t
        self._extract = dict(
            normalize_fn=normalize_fn,
            batch_size=batch_size,
            device=device,
            amp=amp,
            channels_last=channels_last,
        )

    def features(self, encoder: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """Frozen features of the train and test subsets: (n_train, F), (n_test, F)."""
        tr = extract_features(encoder, self.train_images, **self._extract)  # type: ignore[arg-type]
        te = extract_features(encoder, self.test_images, **self._extract)  # type: ignore[arg-type]
        return tr, te

    def __call__(self, encoder: Callable[[Tensor], Tensor]) -> float:
        """kNN top-1 in percent of ``encoder`` (mode restored afterwards)."""
        tr, te = self.features(encoder)
        return knn_accuracy(
            tr, self.train_labels, te, self.test_labels, self.k, self.t, self.num_classes
        )
