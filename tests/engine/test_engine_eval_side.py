"""The evaluation's optional test-time side (``normalizer(..., side)``, ``split_features``,
``precise_bn_pass``): images resized after normalisation, and BN statistics recomputed at that
side (Touvron et al. 2019, FixRes)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from contrastlab.config import Config, apply_overrides
from contrastlab.data import ImageDataset
from contrastlab.engine.evaluate import normalizer, split_features
from contrastlab.engine.setup import method_for, precise_bn_pass


def _dataset(n: int = 64, side: int = 28, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, side, side), generator=g, dtype=torch.uint8)
    labels = torch.arange(n, dtype=torch.int64) % 4
    return ImageDataset(images, labels, ["a", "b", "c", "d"], "toy", mean=[0.3], std=[0.35])


def test_normalizer_resizes_after_normalising_and_checks_the_side() -> None:
    ds = _dataset(8)
    x = ds.images
    plain = normalizer(ds)(x)
    assert plain.shape == (8, 1, 28, 28)
    torch.testing.assert_close(plain, (x.float() / 255 - 0.3) / 0.35)
    assert torch.equal(normalizer(ds, 28)(x), plain)  # the images' own side: unchanged
    big = normalizer(ds, 32)(x)
    assert big.shape == (8, 1, 32, 32)
    torch.testing.assert_close(big, F.interpolate(plain, size=(32, 32), mode="bilinear"))
    small = normalizer(ds, 14)(x)  # shrinking is antialiased (a triangle filter over 4 pixels)
    kw = {"size": (14, 14), "mode": "bilinear"}
    torch.testing.assert_close(small, F.interpolate(plain, antialias=True, **kw))  # type: ignore[arg-type]
    assert not torch.allclose(small, F.interpolate(plain, **kw), atol=1e-2)  # type: ignore[arg-type]
    for bad in (0, -4):
        with pytest.raises(ValueError, match="side must be a positive int"):
            normalizer(ds, bad)


def test_precise_bn_at_a_side_describes_the_resized_images() -> None:
    """After ``precise_bn_pass(..., side=32)`` the first BN layer's running statistics are
    those of its input on all training images resized to 32×32, and differ from those at 28;
    ``split_features`` at that side reads the resized images."""
    cfg = apply_overrides(
        Config(), ["train.amp=false", "train.precise_bn=64", "train.channels_last=false"]
    )
    train_set, test_set = _dataset(64), _dataset(16, seed=1)
    method = method_for(cfg, train_set, None)
    backbone = method.backbone
    conv, pool, bn = backbone.unit1[0], backbone.unit1[1], backbone.unit1[2]  # type: ignore[index]

    def first_bn_input(side: int) -> torch.Tensor:
        with torch.no_grad():
            pre = pool(conv(backbone.stem(normalizer(train_set, side)(train_set.images))))  # type: ignore[operator]
        return pre.transpose(0, 1).reshape(pre.shape[1], -1)

    precise_bn_pass(cfg, method, train_set, torch.device("cpu"), side=32)
    at32 = first_bn_input(32)
    torch.testing.assert_close(bn.running_mean, at32.mean(dim=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, at32.var(dim=1), rtol=1e-4, atol=1e-5)
    precise_bn_pass(cfg, method, train_set, torch.device("cpu"))
    assert not torch.allclose(bn.running_var, at32.var(dim=1), rtol=1e-3)
    torch.testing.assert_close(bn.running_var, first_bn_input(28).var(dim=1), rtol=1e-4, atol=1e-5)

    backbone.eval()
    feats = split_features(backbone, train_set, test_set, cfg, torch.device("cpu"), side=32)
    with torch.no_grad():
        direct = backbone(normalizer(train_set, 32)(test_set.images))
    torch.testing.assert_close(feats["test"], direct, rtol=1e-4, atol=1e-5)
    assert feats["train"].shape == (64, direct.shape[1])
