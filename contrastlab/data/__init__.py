"""contrastlab.data: datasets held as one uint8 tensor, and batched multi-view augmentation.

>>> from contrastlab.data import load_dataset, make_augment
>>> ds = load_dataset("fashion-mnist").to(device)
>>> aug = augment_for(ds, views=2)              # the "grayscale" preset, ds.mean/std
>>> for images, labels in ds.batches(512, generator=g):
...     views = aug(images, generator=g)    # list of 2 float tensors (512, 1, 20, 20)
"""

from contrastlab.data.augment import (
    DEFAULT_PRESET,
    DEFAULT_PRESET_ONE_DIRECTIONAL,
    DEFAULT_PRESET_SUPERVISED,
    PRESET_VIEW_SIZE,
    PRESETS,
    MultiViewAugment,
    ViewSpec,
    augment_for,
    augment_view,
    make_augment,
    preset_for,
)
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
    "DEFAULT_PRESET",
    "DEFAULT_PRESET_ONE_DIRECTIONAL",
    "DEFAULT_PRESET_SUPERVISED",
    "PRESETS",
    "PRESET_VIEW_SIZE",
    "ChecksumError",
    "DownloadError",
    "ImageDataset",
    "MultiViewAugment",
    "ViewSpec",
    "augment_for",
    "augment_view",
    "available_datasets",
    "cache_dir",
    "compute_mean_std",
    "download_file",
    "extract_tar",
    "load_dataset",
    "make_augment",
    "preset_for",
]
