"""``load_dataset``: one entry point that finds, downloads and reads every dataset.

Names are looked up in one table; each entry knows its splits and its loader. The search
order when ``root`` is None: the cache (``$CONTRASTLAB_DATA`` or ``~/.cache/contrastlab``,
one folder per dataset), then, for Fashion-MNIST, the Debian package's folder
``/usr/share/datasets/fashion-mnist``, then a download if ``download=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from contrastlab.data.cifar import CIFAR_LAYOUT, find_cifar_folder, load_cifar
from contrastlab.data.datasets import ImageDataset
from contrastlab.data.download import extract_tar
from contrastlab.data.folder import load_image_folder
from contrastlab.data.idx import has_idx_split, load_idx_split
from contrastlab.data.sources import fetch, not_found, search_roots
from contrastlab.data.stats import DATASET_STATS
from contrastlab.data.stl10 import STL10_ARCHIVE, STL10_FOLDER, find_stl10_folder, load_stl10
from contrastlab.data.svhn import SVHN_CLASSES, load_svhn, svhn_file

Root = str | Path | None
Loaded = tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))


def _idx(name: str, classes: tuple[str, ...]) -> Callable[[str, Root, bool], Loaded]:
    def load(split: str, root: Root, download: bool) -> Loaded:
        roots = search_roots(name, root)
        for folder in roots:
            if has_idx_split(folder, split):
                return (*load_idx_split(folder, split, len(classes)), classes)
        if not download:
            raise not_found(name, split, roots, "the IDX files")
        return (*load_idx_split(fetch(name, split, root), split, len(classes)), classes)

    return load


def _archive(
    name: str,
    archive: str,
    member: str,
    find: Callable[[Path], Path | None],
    read: Callable[[Path, str], Loaded],
) -> Callable[[str, Root, bool], Loaded]:
    def load(split: str, root: Root, download: bool) -> Loaded:
        roots = search_roots(name, root)
        for base in roots:
            folder = find(base)
            if folder is None and (base / archive).is_file():
                folder = extract_tar(base / archive, base, member)
            if folder is not None:
                return read(folder, split)
        if not download:
            raise not_found(name, split, roots, f"{member}/ or {archive}")
        target = fetch(name, split, root)
        return read(extract_tar(target / archive, target, member), split)

    return load


def _cifar(variant: str) -> Callable[[str, Root, bool], Loaded]:
    layout = CIFAR_LAYOUT[variant]
    return _archive(
        variant,
        layout["archive"],
        layout["folder"],
        lambda base: find_cifar_folder(base, variant),
        lambda folder, split: load_cifar(folder, variant, split),
    )


def _svhn(split: str, root: Root, download: bool) -> Loaded:
    roots = search_roots("svhn", root)
    for folder in roots:
        if svhn_file(folder, split).is_file():
            return (*load_svhn(svhn_file(folder, split)), SVHN_CLASSES)
    if not download:
        raise not_found("svhn", split, roots, svhn_file(Path(), split).name)
    return (*load_svhn(svhn_file(fetch("svhn", split, root), split)), SVHN_CLASSES)


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: its splits and how to load one."""

    splits: tuple[str, ...]
    load: Callable[[str, Root, bool], Loaded]


DATASETS: dict[str, DatasetEntry] = {
    "fashion-mnist": DatasetEntry(("train", "test"), _idx("fashion-mnist", FASHION_MNIST_CLASSES)),
    "mnist": DatasetEntry(("train", "test"), _idx("mnist", MNIST_CLASSES)),
    "cifar10": DatasetEntry(("train", "test"), _cifar("cifar10")),
    "cifar100": DatasetEntry(("train", "test"), _cifar("cifar100")),
    "stl10": DatasetEntry(
        ("train", "test", "unlabeled", "train+unlabeled"),
        _archive("stl10", STL10_ARCHIVE, STL10_FOLDER, find_stl10_folder, load_stl10),
    ),
    "svhn": DatasetEntry(("train", "test", "extra"), _svhn),
    "image-folder": DatasetEntry(("train", "test", "val"), lambda s, r, d: _load_folder(s, r)),
}
ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "stl-10": "stl10",
    "folder": "image-folder",
    "image_folder": "image-folder",
    "imagefolder": "image-folder",
}


def available_datasets() -> list[str]:
    """Registered dataset names (aliases excluded)."""
    return sorted(DATASETS)


def _load_folder(split: str, root: Root, image_size: int | tuple[int, int] | None = None) -> Loaded:
    if root is None:
        raise ValueError("image-folder needs root= the folder holding the images")
    base = Path(root).expanduser()
    if (base / split).is_dir():
        base = base / split
    elif split != "train":
        raise FileNotFoundError(f"image-folder: no {split}/ sub-folder in {base}")
    return load_image_folder(base, image_size)


def load_dataset(
    name: str = "fashion-mnist",
    split: str = "train",
    root: str | Path | None = None,
    download: bool = False,
    *,
    image_size: int | tuple[int, int] | None = None,
) -> ImageDataset:
    """Load one split of a dataset from its official files.

    Args:
        name: one of :func:`available_datasets` ("fashion-mnist", "mnist", "cifar10",
            "cifar100", "stl10", "svhn", "image-folder"); a few aliases are accepted.
        split: "train" or "test"; STL-10 also "unlabeled" and "train+unlabeled"; SVHN
            "extra". For an image folder, ``root/split/`` if it exists, else ``root`` (train).
        root: the folder holding the official files or archive (or its extracted folder, e.g.
            ``cifar-10-batches-py/``), as torchvision uses it (MNIST and Fashion-MNIST are
            also found in torchvision's ``root/MNIST/raw`` and ``root/FashionMNIST/raw``). None
            searches the cache and, for Fashion-MNIST, the Debian package
            ``dataset-fashion-mnist``.
        download: fetch missing files (checksum-verified) into ``root`` or the cache.
        image_size: image-folder only: resize every image to this (H, W) (int = square).

    Returns:
        An :class:`ImageDataset` on the CPU: uint8 images (N, C, H, W), int64 labels (N,).

    Raises:
        ValueError: unknown name or split (listing the known ones), corrupt file (named).
        FileNotFoundError: files absent and ``download=False`` (says where to put them).
        DownloadError: the download failed.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(available_datasets())}"
        )
    entry = DATASETS[key]
    if split not in entry.splits:
        raise ValueError(f"split={split!r}: {key} splits are {', '.join(entry.splits)}")
    if image_size is not None and key != "image-folder":
        raise ValueError(f"image_size= applies to image-folder only, not {key}")
    if key == "image-folder":
        images, labels, classes = _load_folder(split, root, image_size)
    else:
        images, labels, classes = entry.load(split, root, download)
    stats = DATASET_STATS.get(key)
    mean, std = stats if stats is not None else (None, None)
    return ImageDataset(images, labels, classes, key, split, mean, std)


__all__ = ["DATASETS", "DatasetEntry", "available_datasets", "load_dataset"]
