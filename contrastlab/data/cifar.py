"""Readers for CIFAR-10 and CIFAR-100 in their official Python-pickle batch format.

Each batch is a pickled dict with ``b"data"`` (N x 3072 uint8, row-major R, G, B planes of
32 x 32) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100). The unpickler only
admits the numpy classes a batch needs, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

CIFAR_LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", b"label_names"),
        "labels": b"labels",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", b"fine_label_names"),
        "labels": b"fine_labels",
    },
}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def unpickle(path: Path) -> dict[bytes, Any]:
    """Load one official batch or meta file.

    Raises:
        ValueError: naming the file, if it is truncated, corrupt or not a dict.
        OSError: if the file cannot be read (missing, no permission, a folder).
    """
    with open(path, "rb") as handle:  # a missing or unreadable file raises its own OSError
        try:
            obj = _BatchUnpickler(handle, encoding="bytes").load()
        except Exception as err:  # pickle raises many types on bad input
            raise ValueError(f"{path}: corrupt or truncated CIFAR batch ({err!r})") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def find_cifar_folder(root: Path, variant: str) -> Path | None:
    """The extracted batch folder under ``root`` (or ``root`` itself), or None."""
    layout = CIFAR_LAYOUT[variant]
    for candidate in (root / layout["folder"], root):
        if (candidate / layout["meta"][0]).is_file():
            return candidate
    return None


def load_cifar(
    folder: Path, variant: str, split: str
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Load a split of CIFAR-10 (``variant="cifar10"``) or CIFAR-100 from its batch folder.

    Returns:
        ``(images, labels, classes)``: uint8 (N, 3, 32, 32), int64 (N,), class names.

    Raises:
        FileNotFoundError: if a batch file is missing.
        ValueError: naming the file, if a batch is corrupt or inconsistent.
    """
    layout = CIFAR_LAYOUT[variant]
    meta_name, names_key = layout["meta"]
    meta_path = folder / meta_name
    meta = unpickle(meta_path)
    if names_key not in meta:
        raise ValueError(f"{meta_path}: missing key {names_key!r}")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key])
    images, labels = [], []
    for batch_name in layout[split]:
        path = folder / batch_name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing CIFAR batch file")
        batch = unpickle(path)
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            targets = np.asarray(batch[layout["labels"]], dtype=np.int64)
        except KeyError as err:
            raise ValueError(f"{path}: missing key {err.args[0]!r}") from err
        if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != targets.shape[0]:
            raise ValueError(
                f"{path}: data of shape {data.shape} and {targets.shape[0]} labels do not "
                "form N x 3072 images with N labels"
            )
        if targets.size and (targets.min() < 0 or targets.max() >= len(classes)):
            raise ValueError(f"{path}: labels outside 0..{len(classes) - 1}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(targets)
    image_tensor = torch.from_numpy(np.concatenate(images))
    return image_tensor, torch.from_numpy(np.concatenate(labels)), classes
