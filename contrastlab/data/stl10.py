"""Reader for STL-10 in its official binary format (Coates, Lee & Ng, 2011).

``*_X.bin`` holds uint8 images of 3 x 96 x 96, each channel stored column-major (as MATLAB
writes it); ``*_y.bin`` holds one uint8 label per image, 1-based. ``unlabeled_X.bin`` holds the
100,000 unlabeled images used for pre-training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

STL10_FOLDER = "stl10_binary"
STL10_ARCHIVE = "stl10_binary.tar.gz"
STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")
_SIDE = 96
_IMAGE_BYTES = 3 * _SIDE * _SIDE


def find_stl10_folder(root: Path) -> Path | None:
    """The extracted ``stl10_binary`` folder under ``root`` (or ``root`` itself), or None."""
    for candidate in (root / STL10_FOLDER, root):
        if (candidate / "class_names.txt").is_file():
            return candidate
    return None


def read_stl10_images(path: Path, chunk: int = 2048) -> torch.Tensor:
    """Read an ``*_X.bin`` file into a uint8 tensor (N, 3, 96, 96), row-major.

    The file is memory-mapped and transposed in chunks, so the peak memory is the output plus
    one chunk (the unlabeled split is 2.8 GB).

    Raises:
        ValueError: naming the file, if its size is not a whole number of images.
    """
    size = path.stat().st_size
    if size == 0 or size % _IMAGE_BYTES:
        raise ValueError(
            f"{path}: {size} bytes is not a whole number of 3x96x96 images "
            f"({_IMAGE_BYTES} bytes each); the file is truncated or corrupt"
        )
    n = size // _IMAGE_BYTES
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, _SIDE, _SIDE))
    out = torch.empty((n, 3, _SIDE, _SIDE), dtype=torch.uint8)
    for start in range(0, n, chunk):
        block = torch.from_numpy(np.array(raw[start : start + chunk]))
        out[start : start + chunk] = block.transpose(2, 3)  # column-major -> (H, W)
    del raw
    return out


def read_stl10_labels(path: Path, count: int, num_classes: int) -> torch.Tensor:
    """Read an ``*_y.bin`` file (1-based uint8 labels) as int64 labels in 0..num_classes-1.

    Raises:
        ValueError: naming the file, if the count or the label range is wrong.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.shape[0] != count:
        raise ValueError(f"{path}: {raw.shape[0]} labels for {count} images (truncated?)")
    if raw.size and (raw.min() < 1 or raw.max() > num_classes):
        raise ValueError(f"{path}: labels must be 1..{num_classes} (the format is 1-based)")
    return torch.from_numpy(raw.astype(np.int64) - 1)


def read_class_names(path: Path) -> tuple[str, ...]:
    """The class names in ``class_names.txt``, one per line."""
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names:
        raise ValueError(f"{path}: no class names")
    return names


def load_stl10(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Load a split of STL-10 from its ``stl10_binary`` folder.

    Args:
        folder: the folder holding ``train_X.bin`` etc.
        split: "train" (5,000), "test" (8,000), "unlabeled" (100,000, labels -1) or
            "train+unlabeled" (both, for pre-training).

    Returns:
        ``(images, labels, classes)``: uint8 (N, 3, 96, 96), int64 (N,), class names.

    Raises:
        ValueError: for an unknown split or a corrupt file (naming it).
        FileNotFoundError: if a file is missing.
    """
    if split not in STL10_SPLITS:
        raise ValueError(f"split={split!r}: STL-10 splits are {', '.join(STL10_SPLITS)}")
    classes = read_class_names(folder / "class_names.txt")
    images, labels = [], []
    for part in split.split("+"):
        x_path = folder / f"{part}_X.bin"
        if not x_path.is_file():
            raise FileNotFoundError(f"{x_path}: missing STL-10 file")
        x = read_stl10_images(x_path)
        if part == "unlabeled":
            y = torch.full((x.shape[0],), -1, dtype=torch.int64)
        else:
            y_path = folder / f"{part}_y.bin"
            if not y_path.is_file():
                raise FileNotFoundError(f"{y_path}: missing STL-10 file")
            y = read_stl10_labels(y_path, x.shape[0], len(classes))
        images.append(x)
        labels.append(y)
    if len(images) == 1:
        return images[0], labels[0], classes
    return torch.cat(images), torch.cat(labels), classes
