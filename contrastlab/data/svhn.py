"""Reader for SVHN's cropped-digit format (Netzer et al., 2011): ``{split}_32x32.mat``.

Each file holds ``X`` (32 x 32 x 3 x N, uint8) and ``y`` (N x 1, labels 1..10 where 10 stands
for the digit 0), read by the package's own MATLAB v5 reader (no scipy needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from contrastlab.data.matlab import read_mat

SVHN_SPLITS = ("train", "test", "extra")
SVHN_CLASSES = tuple(str(d) for d in range(10))


def svhn_file(folder: Path, split: str) -> Path:
    """The path of the official file of ``split`` in ``folder``."""
    if split not in SVHN_SPLITS:
        raise ValueError(f"split={split!r}: SVHN splits are {', '.join(SVHN_SPLITS)}")
    return folder / f"{split}_32x32.mat"


def load_svhn(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one SVHN ``.mat`` file.

    Returns:
        ``(images, labels)``: uint8 (N, 3, 32, 32) and int64 (N,) with the digit (0..9).

    Raises:
        ValueError: naming the file, if it is corrupt, truncated or lacks ``X``/``y``.
    """
    arrays = read_mat(path, {"X", "y"})
    for key in ("X", "y"):
        if key not in arrays:
            raise ValueError(f"{path}: no numeric variable {key!r} (not an SVHN file?)")
    x, y = arrays["X"], arrays["y"]
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N)")
    labels = np.asarray(y).reshape(-1)
    if labels.shape[0] != x.shape[3]:
        raise ValueError(f"{path}: {labels.shape[0]} labels for {x.shape[3]} images")
    if labels.size and (labels.min() < 1 or labels.max() > 10 or np.any(labels % 1)):
        raise ValueError(f"{path}: labels must be integers 1..10 (10 is the digit 0)")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8)
    digits = labels.astype(np.int64) % 10
    return torch.from_numpy(images), torch.from_numpy(digits)
