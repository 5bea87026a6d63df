"""contrastlab.data: datasets held as one uint8 tensor, and batched multi-view augmentation.

    >>> from contrastlab.data import load_dataset, make_augment
    >>> ds = load_dataset("fashion-mnist").to(device)
    >>> aug = make_augment("grayscale", ds, views=2)
    >>> for images, labels in ds.batches(512, generator=g):
    ...     views = aug(images, generator=g)    # list of 2 float tensors (512, 1, 28, 28)
"""

from contrastlab.data.datasets import ImageDataset
from contrastlab.data.download import (
    ChecksumError,
    DownloadError,
    cache_dir,
    download_file,
    extract_tar,
)
from contrastlab.data.registry import available_datasets, load_dataset
from contrastlab.data.stats import DATASET_STATS, compute_mean_std

__all__ = [
    "DATASET_STATS",
    "ChecksumError",
    "DownloadError",
    "ImageDataset",
    "available_datasets",
    "cache_dir",
    "compute_mean_std",
    "download_file",
    "extract_tar",
    "load_dataset",
]
