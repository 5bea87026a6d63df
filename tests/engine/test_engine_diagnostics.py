"""The training diagnostics: what they report for a method without τ and for partly labelled data."""

from __future__ import annotations

import warnings

import torch

from contrastlab.config import Config, apply_overrides
from contrastlab.data import ImageDataset
from contrastlab.engine.diagnostics import HARDNESS_TAU, Diagnostics, embed_views
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


def test_embed_views_runs_the_backbone_once_per_view() -> None:
    """View 1's features feed both the feature read-out and the head (one backbone pass per
    view), and give what ``project`` gives; a method that customises ``project`` is still
    called through it."""
    data = _dataset(torch.tensor([0, 1, 2] * 4))
    for name in ("simclr", "byol"):
        cfg = apply_overrides(Config(), [f"method.name={name}", "model.width=8"])
        method = build_method(cfg, in_channels=1)
        augment = augment_of(cfg, data, method)
        calls: list[int] = []
        hook = method.backbone.register_forward_hook(lambda m, i, o, c=calls: c.append(len(o)))
        z1, _, feats = embed_views(method, data.images, augment, seed=3, batch=5, amp=False)
        hook.remove()
        assert calls == [5, 5, 5, 5, 2, 2]  # three batches, two views each
        v1 = augment(data.images[:5], generator=torch.Generator().manual_seed(3))[0]
        method.eval()
        with torch.no_grad():
            want = torch.nn.functional.normalize(method.project(v1).float(), dim=1)
            torch.testing.assert_close(z1[:5], want)
            torch.testing.assert_close(feats[:5], method.backbone(v1).float())

    projected: list[int] = []

    class Custom(type(method)):  # type: ignore[misc]
        def project(self, images: torch.Tensor) -> torch.Tensor:
            projected.append(len(images))
            return 2.0 * super().project(images)

    method.__class__ = Custom
    z1c, _, _ = embed_views(method, data.images, augment, seed=3, batch=5, amp=False)
    assert projected == [5, 5, 5, 5, 2, 2]  # both views through the custom project
    torch.testing.assert_close(z1c, z1)  # normalised, so the factor 2 vanishes
