"""End-of-run evaluation and the run summary (``summary.json``).

The trained backbone (features before the projection head) is frozen and evaluated with the
weighted kNN (k 200, t 0.1, cosine; SPEC.md §9) and a linear probe on standardised frozen
features, next to the same encoder untrained. Representation metrics (alignment, uniformity,
tolerance) are measured on the test split's projections.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from contrastlab.config import Config
from contrastlab.data import ImageDataset, MultiViewAugment
from contrastlab.engine.diagnostics import embed_views
from contrastlab.eval import extract_features, knn_accuracy, linear_probe
from contrastlab.methods import Method
from contrastlab.metrics import alignment, effective_rank, tolerance, uniformity

__all__ = ["evaluate_backbone", "evaluate_run", "normalizer", "read_out", "split_features"]


def normalizer(dataset: ImageDataset, side: int | None = None) -> Callable[[Tensor], Tensor]:
    """uint8 ``(B, C, H, W)`` → float normalised with the dataset's mean and std.

    Args:
        side: if set, the normalised images are then resized to ``(B, C, side, side)``
            (bilinear, antialiased when shrinking), e.g. to read an encoder trained on resized
            crops at another test-time resolution (Touvron et al. 2019, "Fixing the train-test
            resolution discrepancy"). None keeps the images' own size.

    Raises:
        ValueError: if ``side`` is not a positive int.
    """
    if side is not None and side < 1:
        raise ValueError(f"side must be a positive int or None, got {side}")
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)

    def fn(x: Tensor) -> Tensor:
        y = (x.float().div(255.0) - mean.to(x.device)) / std.to(x.device)
        if side is None or y.shape[-2:] == (side, side):
            return y
        return F.interpolate(y, size=(side, side), mode="bilinear", antialias=True)

    return fn


def split_features(
    backbone: nn.Module,
    train_set: ImageDataset,
    test_set: ImageDataset,
    cfg: Config,
    device: torch.device,
    side: int | None = None,
) -> dict[str, Tensor]:
    """Frozen features of both splits as the evaluation reads them: ``train`` (N, F) and
    ``test`` (M, F), float32, with the training split's normalisation and the run's bf16
    autocast and memory layout (the images resized to ``side``, if set: see ``normalizer``)."""
    norm = normalizer(train_set, side)
    return {
        name: extract_features(
            backbone,
            ds.images,
            normalize_fn=norm,
            device=device,
            amp=cfg.train.amp,
            channels_last=cfg.train.channels_last,
        )
        for name, ds in (("train", train_set), ("test", test_set))
    }


_EVAL_KEYS = (
    "linear_top1",
    "knn_top1",
    "eval_seconds",
    "features_seconds",
    "knn_seconds",
    "probe_seconds",
)


def read_out(
    cfg: Config,
    bank: Tensor,
    bank_labels: Tensor,
    query: Tensor,
    query_labels: Tensor,
    num_classes: int | None = None,
) -> dict[str, float]:
    """The two read-outs of frozen features at the run's evaluation settings (``cfg.eval``;
    SPEC.md §9): weighted-kNN top-1 of ``query`` (M, F) with ``bank`` (N, F) as its neighbours,
    and the top-1 of a linear probe trained on ``bank`` and scored on ``query`` (percent);
    labels are (N,) and (M,). ``num_classes`` is the kNN's vote width (None: from the labels).

    Returns:
        ``knn_top1``, ``linear_top1``, and the seconds each took (``knn_seconds``,
        ``probe_seconds``).
    """
    t0 = time.perf_counter()
    knn = knn_accuracy(
        bank,
        bank_labels,
        query,
        query_labels,
        k=cfg.eval.knn_k,
        t=cfg.eval.knn_t,
        num_classes=num_classes,
    )
    t1 = time.perf_counter()
    probe = linear_probe(
        bank,
        bank_labels,
        query,
        query_labels,
        epochs=cfg.eval.linear_epochs,
        lr=cfg.eval.linear_lr,
        weight_decay=cfg.eval.linear_weight_decay,
        batch_size=cfg.eval.linear_batch_size,
        seed=cfg.train.seed,
        amp=cfg.train.amp,
    )
    return {
        "knn_top1": float(knn),
        "linear_top1": float(probe.test_top1),
        "knn_seconds": t1 - t0,
        "probe_seconds": time.perf_counter() - t1,
    }


def evaluate_backbone(
    backbone: nn.Module,
    train_set: ImageDataset,
    test_set: ImageDataset,
    cfg: Config,
    device: torch.device,
) -> dict[str, Any]:
    """kNN and linear-probe top-1 (percent, on the test split) of a frozen backbone.

    Returns:
        ``knn_top1``, ``linear_top1``, ``eval_seconds`` (all three parts) with its parts
        ``features_seconds``, ``knn_seconds`` and ``probe_seconds``, and the features
        (``train_features``, ``test_features``; float32 tensors) for further use.
    """
    t0 = time.perf_counter()
    feats = split_features(backbone, train_set, test_set, cfg, device)
    t1 = time.perf_counter()
    scores = read_out(
        cfg,
        feats["train"],
        train_set.labels,
        feats["test"],
        test_set.labels,
        num_classes=len(train_set.classes),
    )
    return {
        **scores,
        "eval_seconds": time.perf_counter() - t0,
        "features_seconds": t1 - t0,
        "train_features": feats["train"],
        "test_features": feats["test"],
    }


def evaluate_run(
    cfg: Config,
    run_dir: Path,
    method: Method,
    train_set: ImageDataset,
    test_set: ImageDataset,
    augment: MultiViewAugment,
    device: torch.device,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a trained method and write ``summary.json`` (and the test embeddings).

    Args:
        extra: fields merged into the summary (epochs_done, train_seconds, ...).

    Returns:
        The summary dict (what ``summary.json`` holds).
    """
    labeled = train_set.is_labeled and test_set.is_labeled
    summary: dict[str, Any] = {
        "method": cfg.method.name,
        "dataset": cfg.data.dataset,
        **(extra or {}),
    }
    if labeled:
        trained = evaluate_backbone(method.backbone, train_set, test_set, cfg, device)
        summary.update({k: trained[k] for k in _EVAL_KEYS})
        if cfg.eval.save_embeddings:
            np.save(run_dir / "test_features.npy", trained["test_features"].numpy())
            np.save(run_dir / "test_labels.npy", test_set.labels.cpu().numpy())
        init = run_dir / "init_backbone.pt"
        if cfg.eval.untrained_baseline and init.exists():
            untrained = _untrained_copy(method.backbone, init)
            base = evaluate_backbone(untrained, train_set, test_set, cfg, device)
            summary["untrained_linear_top1"] = base["linear_top1"]
            summary["untrained_knn_top1"] = base["knn_top1"]
    n = min(len(test_set), 10_000)
    z1, z2, _ = embed_views(
        method, test_set.images[:n], augment, seed=cfg.train.seed + 303, amp=cfg.train.amp
    )
    summary["alignment"] = alignment(z1, z2)
    summary["uniformity"] = uniformity(z1)
    summary["effective_rank"] = effective_rank(z1)
    if labeled:
        summary["tolerance"] = tolerance(z1, test_set.labels[:n])
    if cfg.eval.save_embeddings:
        np.save(run_dir / "test_projections.npy", torch.stack([z1, z2], dim=1).numpy())
    policy = method.temperature
    summary["final_temperature"] = (
        None if policy is None else policy.value(int(summary.get("steps", 0)))
    )
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _untrained_copy(backbone: nn.Module, init_path: Path) -> nn.Module:
    import copy

    untrained = copy.deepcopy(backbone)
    untrained.load_state_dict(torch.load(init_path, map_location="cpu", weights_only=True))
    return untrained
