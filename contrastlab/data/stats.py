"""Per-channel mean and standard deviation of each dataset's training split.

Values are in [0, 1] units (pixel / 255), one entry per channel. Fashion-MNIST's values are
checked against the Debian files by the test suite; the others are the widely published
train-split statistics. Datasets without an entry (an image folder) get theirs computed by
:func:`compute_mean_std`.
"""

from __future__ import annotations

import torch

Stats = tuple[tuple[float, ...], tuple[float, ...]]

DATASET_STATS: dict[str, Stats] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


def compute_mean_std(images: torch.Tensor, chunk: int = 4096) -> Stats:
    """Per-channel mean and population std of a uint8 image tensor, in [0, 1] units.

    Args:
        images: uint8 tensor of shape (N, C, H, W), N >= 1.
        chunk: number of images summed at a time (bounds the float64 working memory).

    Returns:
        ``(mean, std)``, each a tuple of C floats.

    Raises:
        ValueError: if ``images`` is not a non-empty 4-D uint8 tensor.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(
            f"images must be a non-empty uint8 tensor (N, C, H, W), got {images.dtype} "
            f"of shape {tuple(images.shape)}"
        )
    n, c = images.shape[0], images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        block = images[start : start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3)).cpu()
        total_sq += block.square().sum(dim=(0, 2, 3)).cpu()
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0.0).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
