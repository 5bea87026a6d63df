"""Representation diagnostics during training, on a fixed evaluation subset.

Every few epochs: alignment, uniformity (−L_unif, t = 2), tolerance (over the labelled samples),
effective rank of the backbone features, the hardness profile of the gradient over negatives at the
method's current τ (for a method without one, BYOL, NT-Xent's at ``HARDNESS_TAU``, logged as
``hardness_tau``), and τ itself. A warning is logged when the embeddings collapse.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from contrastlab.config import Config
from contrastlab.data import ImageDataset, MultiViewAugment
from contrastlab.eval import autocast
from contrastlab.methods import Method
from contrastlab.metrics import alignment, effective_rank, hardness, tolerance, uniformity
from contrastlab.ops import normalize

__all__ = [
    "COLLAPSE_EFFECTIVE_RANK",
    "COLLAPSE_UNIFORMITY",
    "HARDNESS_TAU",
    "Diagnostics",
    "embed_views",
]

#: below these the embeddings are reported as collapsing.
COLLAPSE_EFFECTIVE_RANK = 2.0
COLLAPSE_UNIFORMITY = 0.5
#: the τ at which the hardness profile of a method without a temperature is measured.
HARDNESS_TAU = 0.5


@torch.no_grad()
def embed_views(
    method: Method,
    images: torch.Tensor,
    augment: MultiViewAugment,
    seed: int,
    batch: int = 512,
    amp: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two augmented views of ``images`` through the method (eval mode, no side effects).

    Returns:
        ``(z1, z2, feats)``: ``(N, D)`` normalised projections of each view and the ``(N, F)``
        backbone features of the first view, all float32.
    """
    was_training = method.training
    method.eval()
    custom = type(method).project is not Method.project
    gen = torch.Generator().manual_seed(seed)
    z1s, z2s, fs = [], [], []
    try:
        for start in range(0, images.shape[0], batch):
            v1, v2 = augment(images[start : start + batch], generator=gen)[:2]
            with autocast(v1.device, amp):
                f1 = method.backbone(v1)
                # the head on f1 saves a second backbone pass, unless a method customises project
                z1 = method.project(v1) if custom else method.project_features(f1)
                z2 = method.project(v2)
            z1s.append(normalize(z1.float()))
            z2s.append(normalize(z2.float()))
            fs.append(f1.float())
    finally:
        method.train(was_training)
    return torch.cat(z1s), torch.cat(z2s), torch.cat(fs)


class Diagnostics:
    """Computes the diagnostics of one method on a fixed subset of the evaluation split."""

    def __init__(
        self, cfg: Config, dataset: ImageDataset, augment: MultiViewAugment, device: torch.device
    ) -> None:
        n = min(cfg.train.diagnostics_samples, len(dataset))
        g = torch.Generator().manual_seed(cfg.train.seed + 101)
        idx = torch.randperm(len(dataset), generator=g)[:n].to(dataset.images.device)
        self.images = dataset.images.index_select(0, idx)
        self.labels = dataset.labels.index_select(0, idx)
        self.labeled = int((self.labels >= 0).sum()) >= 2
        self.augment = augment
        self.seed = cfg.train.seed + 202
        self.amp = cfg.train.amp

    def __call__(self, method: Method, step: int) -> dict[str, Any]:
        z1, z2, feats = embed_views(method, self.images, self.augment, self.seed, amp=self.amp)
        out: dict[str, Any] = {
            "alignment": alignment(z1, z2),
            "uniformity": uniformity(z1),
            "effective_rank": effective_rank(feats),
            "embedding_effective_rank": effective_rank(z1),
        }
        if self.labeled:
            try:
                out["tolerance"] = tolerance(z1, self.labels)  # ignores unlabelled samples
            except ValueError:  # no class with two labelled samples in the subset
                pass
        policy = method.temperature
        tau: Any = policy if policy is not None else HARDNESS_TAU
        if policy is None:
            out["hardness_tau"] = HARDNESS_TAU
        prof = hardness(z1, z2, tau, step=step).summary()
        out.update(prof)
        if (
            out["embedding_effective_rank"] < COLLAPSE_EFFECTIVE_RANK
            or out["uniformity"] < COLLAPSE_UNIFORMITY
        ):
            msg = (
                f"embeddings are collapsing at step {step}: effective rank "
                f"{out['embedding_effective_rank']:.2f}, uniformity {out['uniformity']:.3f}"
            )
            out["collapse_warning"] = msg
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return out
