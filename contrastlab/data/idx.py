"""Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.), gzipped or raw.

An IDX file is: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions,
one big-endian int32 per dimension, then the values in row-major order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

_UBYTE = 0x08

# (images, labels) base names of the official files, per split.
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read one uint8 IDX file (``.gz`` or uncompressed) into a numpy array.

    Returns:
        uint8 array with the file's dimensions, e.g. (N, 28, 28) for images, (N,) for labels.

    Raises:
        ValueError: naming the file, if it is not valid gzip, has a wrong magic number or type,
            or is shorter or longer than its header says.
        OSError: if the file cannot be read (missing, no permission, a folder).
    """
    path = Path(path)
    raw = path.read_bytes()  # a missing or unreadable file raises its own OSError
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != _UBYTE:
        raise ValueError(f"{path}: IDX value type 0x{raw[2]:02x} is not unsigned byte")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header announces {expected} values of shape {dims} but the file "
            f"holds {len(raw) - header} (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_file(folder: Path, base: str) -> Path | None:
    """The path of ``base`` or ``base.gz`` in ``folder`` (gzipped preferred), or None."""
    for candidate in (folder / f"{base}.gz", folder / base):
        if candidate.is_file():
            return candidate
    return None


def has_idx_split(folder: Path, split: str) -> bool:
    """True if ``folder`` holds both IDX files of ``split`` ("train" or "test")."""
    return all(find_idx_file(folder, base) is not None for base in IDX_FILES[split])


def load_idx_split(
    folder: Path, split: str, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of an MNIST-like dataset from the folder holding its official files.

    Returns:
        ``(images, labels)``: uint8 (N, 1, H, W) and int64 (N,).

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: naming the file, if a file is corrupt, images and labels disagree, or a
            label is ``num_classes`` or more (when given).
    """
    found = []
    for base in IDX_FILES[split]:
        path = find_idx_file(folder, base)
        if path is None:
            raise FileNotFoundError(f"{folder}: missing {base}.gz (or {base})")
        found.append(path)
    image_path, label_path = found
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3:
        raise ValueError(f"{image_path}: expected 3 dimensions (N, H, W), got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{label_path}: {labels.shape} labels do not match {images.shape[0]} images "
            f"in {image_path}"
        )
    if num_classes is not None and labels.size and int(labels.max()) >= num_classes:
        raise ValueError(
            f"{label_path}: labels must be 0..{num_classes - 1}, found {int(labels.max())}"
        )
    image_tensor = torch.from_numpy(images.copy()).unsqueeze(1)
    return image_tensor, torch.from_numpy(labels.astype(np.int64))
