"""Backbones: output shapes, feat_dim, gradient on every parameter, registry errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastlab.nn import BACKBONES, SmallCNN, build_backbone


@pytest.mark.parametrize(
    ("name", "in_channels", "size", "cifar_stem", "feat_dim"),
    [
        ("small_cnn", 1, 28, False, 1024),
        ("small_cnn", 3, 32, False, 1024),
        ("resnet18", 3, 32, True, 512),
        ("resnet18", 1, 16, True, 512),
        ("resnet34", 3, 16, True, 512),
        ("resnet50", 3, 32, False, 2048),
    ],
)
def test_registered_backbone_shape_and_gradients(
    name: str, in_channels: int, size: int, cifar_stem: bool, feat_dim: int
) -> None:
    torch.manual_seed(0)
    net = build_backbone(name, in_channels=in_channels, cifar_stem=cifar_stem)
    assert net.feat_dim == feat_dim
    x = torch.randn(2, in_channels, size, size)
    out = net(x)
    assert out.shape == (2, feat_dim)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_every_registry_entry_builds() -> None:
    for name in BACKBONES:
        net = build_backbone(name, in_channels=3, cifar_stem=True)
        assert isinstance(net.feat_dim, int)


def test_unknown_backbone_lists_known_names() -> None:
    with pytest.raises(ValueError, match="resnet18.*small_cnn|small_cnn.*resnet18"):
        build_backbone("vgg", in_channels=3, cifar_stem=False)


def test_small_cnn_widths_and_channels_last() -> None:
    net = SmallCNN(in_channels=1, widths=(8, 16, 32, 48)).to(memory_format=torch.channels_last)
    x = torch.randn(3, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.shape == (3, 48) and net.feat_dim == 48


def test_bad_input_shapes_raise() -> None:
    with pytest.raises(ValueError, match="widths"):
        SmallCNN(widths=(8, 16))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        SmallCNN()(torch.randn(1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        build_backbone("resnet18")(torch.randn(3, 32, 32))


def test_relu_global_mean_matches_composed_ops_and_gradcheck() -> None:
    from contrastlab.nn.small_cnn import relu_global_mean

    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    x = x.to(memory_format=torch.channels_last).requires_grad_()
    torch.autograd.gradcheck(relu_global_mean, (x,))
    up = torch.randn(4, 5, generator=g, dtype=torch.float64)
    (got,) = torch.autograd.grad((relu_global_mean(x) * up).sum(), x)
    ref_x = x.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad((torch.relu(ref_x).mean(dim=(2, 3)) * up).sum(), ref_x)
    assert torch.equal(relu_global_mean(x), torch.relu(x).mean(dim=(2, 3)))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    # the mask: negative inputs get no gradient, positive ones 1/(H W) of theirs
    assert torch.all(got[x < 0] == 0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        relu_global_mean(torch.randn(3, 4))


def test_small_cnn_output_unchanged_by_fused_pool() -> None:
    torch.manual_seed(0)
    net = SmallCNN(widths=(8, 16, 32, 64)).train()
    x = torch.randn(6, 1, 28, 28)
    units = net.unit4(net.unit3(net.unit2(net.unit1(net.stem(x)))))
    torch.testing.assert_close(net(x), units.mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("pools", "final_side", "min_size"),
    [((True, False, True), 3, 8), ((True, True, False), 3, 8), ((True, True, True), 1, 16)],
)
def test_small_cnn_pool_positions(pools, final_side: int, min_size: int) -> None:
    torch.manual_seed(0)
    net = SmallCNN(widths=(8, 16, 32, 64), pools=pools).eval()
    x = torch.randn(2, 1, 28, 28)
    last = net.unit3(net.unit2(net.unit1(net.stem(x))))
    assert last.shape[-2:] == (final_side, final_side)
    torch.testing.assert_close(net(x), net.unit4(last).mean(dim=(2, 3)))
    assert net.min_size == min_size
    net(torch.randn(1, 1, min_size, min_size))
    with pytest.raises(ValueError, match=f"H, W >= {min_size}"):
        net(torch.randn(1, 1, min_size - 2, min_size - 2))
    with pytest.raises(ValueError, match="pools"):
        SmallCNN(pools=(True, True))


def test_model_pools_config_key() -> None:
    from contrastlab.config import Config, ConfigError, apply_overrides
    from contrastlab.methods import build_method

    method = build_method(apply_overrides(Config(), ["model.pools=1,2"]), in_channels=1)
    assert method.backbone.pools == (True, True, False)
    # None (the default): SupCon pools after units 1 and 2, the other methods after 1 and 3
    for name, want in [("simclr", (True, False, True)), ("supcon", (True, True, False))]:
        cfg = apply_overrides(Config(), [f"method.name={name}"])
        assert build_method(cfg, in_channels=1).backbone.pools == want
    cfg = apply_overrides(Config(), ["method.name=supcon", "model.pools=1,3"])
    assert build_method(cfg, in_channels=1).backbone.pools == (True, False, True)
    with pytest.raises(ConfigError, match="model.pools"):
        build_method(apply_overrides(Config(), ["model.pools=1,4"]), in_channels=1)
    with pytest.raises(ConfigError, match="pools is a small_cnn option"):
        cfg = apply_overrides(Config(), ["model.backbone=resnet18", "model.pools=2"])
        build_method(cfg, in_channels=3)


def test_small_cnn_learned_stem() -> None:
    """``stem_width=C``: a full-resolution conv3×3 → max-pool → BN → ReLU stem with C channels
    replaces the space-to-depth stem; the map sizes after it are the same."""
    torch.manual_seed(0)
    patch = SmallCNN(widths=(8, 16, 32, 64))
    learned = SmallCNN(widths=(8, 16, 32, 64), stem_width=6).eval()
    x = torch.randn(3, 1, 28, 28)
    assert learned.stem(x).shape == (3, 6, 14, 14) and patch.stem(x).shape == (3, 4, 14, 14)
    conv = learned.stem[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.in_channels == 1
    stem = torch.relu(learned.stem[2](F.max_pool2d(conv(x), 2)))
    torch.testing.assert_close(learned.stem(x), stem)
    assert learned(x).shape == (3, 64) and learned.min_size == patch.min_size
    with pytest.raises(ValueError, match="stem_width"):
        SmallCNN(stem_width=-1)


def test_model_stem_width_config_key() -> None:
    """``model.stem_width``: None is the method's default, resolved into the config; an old
    run's config without the key rebuilds the space-to-depth stem; ResNets reject it."""
    from contrastlab.config import (
        Config,
        ConfigError,
        apply_overrides,
        config_from_run,
        config_to_dict,
    )
    from contrastlab.methods import SMALL_CNN_DEFAULTS, build_method, with_method_defaults

    for name in ("simclr", "supcon"):
        cfg = apply_overrides(Config(), [f"method.name={name}"])
        want = int(SMALL_CNN_DEFAULTS.get(name, {}).get("stem_width", 0))
        assert with_method_defaults(cfg).model.stem_width == want
        assert build_method(cfg, in_channels=1).backbone.stem_width == want
    cfg = apply_overrides(Config(), ["method.name=simclr", "model.stem_width=12"])
    backbone = build_method(cfg, in_channels=1).backbone
    assert backbone.stem_width == 12 and backbone.unit1[0].in_channels == 12
    old = config_to_dict(with_method_defaults(apply_overrides(Config(), ["method.name=supcon"])))
    del old["model"]["stem_width"]
    assert config_from_run(old).model.stem_width == 0
    with pytest.raises(ConfigError, match="stem_width is a small_cnn option"):
        cfg = apply_overrides(Config(), ["model.backbone=resnet18", "model.stem_width=8"])
        build_method(cfg, in_channels=3)
