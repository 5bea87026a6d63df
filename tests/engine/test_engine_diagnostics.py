"""The training diagnostics: what they report for a method without τ and for partly labelled data."""

from __future__ import annotations

import warnings

import torch

from contrastlab.config import Config, apply_overrides
from contrastlab.data import ImageDataset
from contrastlab.engine.diagnostics import HARDNESS_TAU, Diagnostics
from contrastlab.engine.views import augment_of
from contrastlab.methods import build_method


def _dataset(labels: torch.Tensor) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (len(labels), 1, 28, 28), generator=g, dtype=torch.uint8)
    return ImageDataset(images, labels, [str(c) for c in range(3)], "fashion-mnist", "test")


def test_byol_hardness_is_labelled_and_tolerance_ignores_unlabelled_samples() -> None:
    labels = torch.tensor([0, 1, 2, -1] * 8)  # a quarter unlabelled
    data = _dataset(labels)
    sets = ["method.name=byol", "model.width=8", "model.proj_hidden_dim=16", "model.proj_dim=8",
            "model.pred_hidden_dim=16", "train.diagnostics_samples=32"]
    cfg = apply_overrides(Config(), sets)
    method = build_method(cfg, in_channels=1)
    diag = Diagnostics(cfg, data, augment_of(cfg, data, method), torch.device("cpu"))
    with warnings.catch_warnings():  # an untrained net may well look collapsed
        warnings.simplefilter("ignore", RuntimeWarning)
        out = diag(method, step=0)
    assert out["hardness_tau"] == HARDNESS_TAU  # BYOL has no τ of its own
    assert -1.0 <= out["tolerance"] <= 1.0  # computed over the 24 labelled samples
    simclr_cfg = apply_overrides(Config(), ["model.width=8", "train.diagnostics_samples=32"])
    simclr = build_method(simclr_cfg, in_channels=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert "hardness_tau" not in Diagnostics(
            simclr_cfg, data, augment_of(simclr_cfg, data, simclr), torch.device("cpu")
        )(simclr, step=0)
