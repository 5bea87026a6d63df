"""Setting up a run: the device and autocast, the datasets, the method placed on the device,
the per-epoch kNN monitor and the PreciseBN pass after training (:mod:`contrastlab.engine.trainer`
drives them)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contrastlab.config import Config, ConfigError
from contrastlab.data import ImageDataset, load_dataset
from contrastlab.engine.evaluate import normalizer
from contrastlab.eval import KNNMonitor, bf16_enabled
from contrastlab.methods import Method, build_method
from contrastlab.nn import recompute_bn_stats

__all__ = [
    "CUSTOM_BACKBONE",
    "MONITOR_TEST",
    "MONITOR_TRAIN",
    "autocast_for",
    "default_run_dir",
    "knn_monitor_for",
    "method_for",
    "placed",
    "precise_bn_pass",
    "prepare_run",
    "resolve_device",
]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA if available, else CPU.

    Raises:
        ConfigError: naming ``train.device``, if torch does not know the device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device: {exc}") from exc


def autocast_for(device: torch.device, amp: bool | None) -> AbstractContextManager[Any]:
    """bf16 autocast (CPU or CUDA) when ``amp`` is True; None = where bf16 is native."""
    if not bf16_enabled(device, amp):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.method.name}-{cfg.data.dataset}-{stamp}"


def prepare_run(cfg: Config) -> tuple[ImageDataset, ImageDataset, torch.device]:
    """Threads, determinism, datasets on the device."""
    if cfg.train.checkpoint_every < 1:
        raise ConfigError(
            f"train.checkpoint_every must be >= 1 (epochs), got {cfg.train.checkpoint_every}"
        )
    if cfg.data.train_subset is not None and cfg.data.train_subset < 1:
        raise ConfigError(
            f"data.train_subset must be >= 1 (images) or null, got {cfg.data.train_subset}"
        )
    if cfg.train.threads is not None:
        if cfg.train.threads < 1:
            raise ConfigError(f"train.threads must be >= 1 or null, got {cfg.train.threads}")
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(cfg.train.device)
    train_set = load_dataset(
        cfg.data.dataset, "train", root=cfg.data.data_dir, download=cfg.data.download
    )
    try:
        test_set = load_dataset(
            cfg.data.dataset, "test", root=cfg.data.data_dir, download=cfg.data.download
        )
    except (FileNotFoundError, ValueError):
        if cfg.data.dataset not in ("image-folder", "folder"):
            raise
        # A user's folder without a test/ sub-folder: hold out a seeded 10% for evaluation.
        train_set, test_set = train_set.split_validation(0.1, seed=cfg.train.seed)
    if cfg.data.train_subset is not None and cfg.data.train_subset < len(train_set):
        g = torch.Generator().manual_seed(cfg.train.seed)
        idx = torch.randperm(len(train_set), generator=g)[: cfg.data.train_subset]
        train_set = train_set.subset(idx)
    return train_set.to(device), test_set.to(device), device


def precise_bn_pass(
    cfg: Config,
    method: Method,
    dataset: ImageDataset,
    device: torch.device,
    side: int | None = None,
) -> float:
    """Recompute the backbone's BN statistics over ``cfg.train.precise_bn`` unaugmented training
    images (a seeded subset, batches of ~512), resized to ``side`` if set (see ``normalizer``);
    returns the seconds taken."""
    t0 = time.perf_counter()
    n = min(int(cfg.train.precise_bn or 0), len(dataset))
    if n < 2:
        return 0.0
    gen = torch.Generator().manual_seed(cfg.train.seed + 29)
    order = torch.randperm(len(dataset), generator=gen)[:n]
    norm = normalizer(dataset, side)

    def batches() -> Iterator[Tensor]:
        for idx in torch.tensor_split(order, math.ceil(n / 512)):
            x = norm(dataset.images[idx].to(device))
            yield x.contiguous(memory_format=torch.channels_last) if cfg.train.channels_last else x

    with autocast_for(device, cfg.train.amp):
        recompute_bn_stats(method.backbone, batches())
    return time.perf_counter() - t0


def placed(method: Method, cfg: Config, device: torch.device) -> Method:
    """``method`` on ``device``, in channels-last memory format when ``cfg.train.channels_last``
    (training and re-evaluation share it, so that their features match bit for bit)."""
    method = method.to(device)
    if cfg.train.channels_last:
        method = method.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return method


def method_for(cfg: Config, dataset: ImageDataset, backbone: torch.nn.Module | None) -> Method:
    """``build_method`` for images shaped like ``dataset``'s (channels, and (H, W) to measure a
    user backbone's feature width)."""
    _, c, h, w = dataset.images.shape
    steps = max(1, len(dataset) // cfg.data.batch_size)
    return build_method(
        cfg, in_channels=c, backbone=backbone, image_shape=(h, w), steps_per_epoch=steps
    )


#: written into a run directory trained with a user-supplied backbone (its repr).
CUSTOM_BACKBONE = "custom_backbone.txt"

#: subset sizes of the per-epoch kNN monitor (train bank, test queries).
MONITOR_TRAIN, MONITOR_TEST = 5000, 1000


def knn_monitor_for(
    cfg: Config, train_set: ImageDataset, test_set: ImageDataset, device: torch.device
) -> KNNMonitor | None:
    """The per-epoch weighted-kNN monitor on fixed subsets, or None (off, or no labels)."""
    if not cfg.train.knn_monitor:
        return None
    if not (train_set.is_labeled and test_set.is_labeled):
        return None
    return KNNMonitor(
        train_set.images,
        train_set.labels,
        test_set.images,
        test_set.labels,
        n_train=MONITOR_TRAIN,
        n_test=MONITOR_TEST,
        k=cfg.eval.knn_k,
        t=cfg.eval.knn_t,
        seed=cfg.train.seed + 303,
        normalize_fn=normalizer(train_set),
        device=device,
        amp=cfg.train.amp,
        channels_last=cfg.train.channels_last,
    )
