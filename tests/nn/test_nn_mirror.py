"""Mirror-equivariant layers and the mirror-invariant small CNN (``model.mirror``).

Each layer is checked against the property it promises, ``layer(T(z)) = T(layer(z))`` with
``T(z) = perm(flip_w(z))``, and against a direct float64 computation of what it should compute.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastlab.nn.mirror import (
    MirrorConv2d,
    PairedBatchNorm2d,
    halves_perm,
    mirror_max_pool2d,
    orbit_features,
    space_to_depth_perm,
)
from contrastlab.nn.small_cnn import SmallCNN


def mirror(z: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
    """The mirror acting on a (N, C, H, W) map: flip W, then permute the channels."""
    flipped = z.flip(-1)
    return flipped if perm is None else flipped[:, perm]


def test_permutations() -> None:
    assert halves_perm(6).tolist() == [3, 4, 5, 0, 1, 2]
    assert space_to_depth_perm(2).tolist() == [1, 0, 3, 2, 5, 4, 7, 6]
    # PixelUnshuffle(2) of a mirrored image is the mirrored, dx-swapped PixelUnshuffle
    x = torch.randn(2, 2, 6, 8)
    unshuffle = torch.nn.PixelUnshuffle(2)
    torch.testing.assert_close(unshuffle(x.flip(-1)), mirror(unshuffle(x), space_to_depth_perm(2)))
    with pytest.raises(ValueError, match="channels must be even"):
        halves_perm(5)


@pytest.mark.parametrize(
    ("kernel", "in_perm"), [(3, None), (3, halves_perm(4)), (1, halves_perm(4))]
)
def test_mirror_conv_weight_and_equivariance(kernel: int, in_perm: torch.Tensor | None) -> None:
    torch.manual_seed(0)
    conv = MirrorConv2d(4, 6, kernel, in_perm=in_perm).double()
    assert conv.weight.shape == (3, 4, kernel, kernel)
    w = conv.full_weight()
    perm = list(range(4)) if in_perm is None else in_perm.tolist()
    for o in range(3):  # the B-half's filter o is the mirror image of V_o over partner channels
        for i in range(4):
            for a in range(kernel):
                for b in range(kernel):
                    assert w[o, i, a, b] == conv.weight[o, i, a, b]
                    assert w[3 + o, i, a, b] == conv.weight[o, perm[i], a, kernel - 1 - b]
    z = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    torch.testing.assert_close(conv(z), F.conv2d(z, w, padding=kernel // 2))
    torch.testing.assert_close(conv(mirror(z, in_perm)), mirror(conv(z), halves_perm(6)))
    with pytest.raises(ValueError, match="involution"):
        MirrorConv2d(3, 2, 3, in_perm=torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="out_channels must be even"):
        MirrorConv2d(2, 3, 3)


@pytest.mark.parametrize("channels_last", [False, True])
def test_paired_batch_norm_shares_statistics_per_pair(channels_last: bool) -> None:
    torch.manual_seed(0)
    bn = PairedBatchNorm2d(6).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64) * torch.arange(1, 7).double()[:, None, None]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = bn(x)
    want = torch.empty_like(x)
    for k in range(3):  # channel k and its partner k + 3 share one mean, variance and affine
        pair = torch.cat([x[:, k], x[:, k + 3]])
        mean, var = pair.mean(), pair.var(unbiased=False)
        for c in (k, k + 3):
            want[:, c] = (x[:, c] - mean) / torch.sqrt(var + bn.eps) * bn.weight[k] + bn.bias[k]
        torch.testing.assert_close(bn.running_mean[k], 0.1 * mean)
        torch.testing.assert_close(bn.running_var[k], 0.9 + 0.1 * pair.var(unbiased=True))
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(bn(mirror(x, halves_perm(6))), mirror(bn(x), halves_perm(6)))
    bn.eval()
    torch.testing.assert_close(bn(mirror(x, halves_perm(6))), mirror(bn(x), halves_perm(6)))
    with pytest.raises(ValueError, match=r"\(N, 6, H, W\)"):
        bn(torch.randn(2, 4, 3, 3, dtype=torch.float64))


@pytest.mark.parametrize("size", [(6, 8), (7, 7), (5, 8), (2, 3)])
def test_mirror_max_pool_commutes_with_flips(size: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size)
    out = mirror_max_pool2d(x)
    assert out.shape == (2, 3, size[0] // 2, size[1] // 2)
    torch.testing.assert_close(mirror_max_pool2d(x.flip(-1)), out.flip(-1))
    torch.testing.assert_close(mirror_max_pool2d(x.flip(-2)), out.flip(-2))
    if size[0] % 2 == 0 and size[1] % 2 == 0:
        torch.testing.assert_close(out, F.max_pool2d(x, 2))
    # the odd side's window j covers positions 2j, 2j+1, 2j+2
    if size[1] % 2:
        want = torch.stack([x[..., 2 * j : 2 * j + 3].amax(-1) for j in range(size[1] // 2)], -1)
        if size[0] % 2 == 0:
            torch.testing.assert_close(out, F.max_pool2d(want, (2, 1)))


def test_orbit_features_invariant_and_differentiable() -> None:
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    swapped = torch.cat([z[:, 3:], z[:, :3]], 1)
    torch.testing.assert_close(orbit_features(swapped), orbit_features(z))
    out = orbit_features(z)
    torch.testing.assert_close(out[:, :3], torch.maximum(z[:, :3], z[:, 3:]))
    torch.testing.assert_close(out[:, 3:], torch.minimum(z[:, :3], z[:, 3:]))
    assert torch.equal(orbit_features(swapped), out)  # bit for bit, not just close
    assert torch.autograd.gradcheck(orbit_features, (z,))
    with pytest.raises(ValueError, match="C even"):
        orbit_features(torch.randn(2, 5))


@pytest.mark.parametrize("stem_width", [0, 6])
@pytest.mark.parametrize("size", [20, 28])
def test_mirror_small_cnn_is_invariant(stem_width: int, size: int) -> None:
    torch.manual_seed(0)
    net = SmallCNN(widths=(8, 16, 32, 64), stem_width=stem_width, mirror=True)
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(6, 1, size, size).contiguous(memory_format=torch.channels_last)
    for train in (True, False):  # batch statistics and running statistics alike
        net.train(train)
        a, b = net(x), net(x.flip(-1).contiguous(memory_format=torch.channels_last))
        assert a.shape == (6, 64)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # a plain small CNN is not invariant, so the check above can fail
    plain = SmallCNN(widths=(8, 16, 32, 64), stem_width=stem_width).eval()
    assert not torch.allclose(plain(x), plain(x.flip(-1)), rtol=1e-3, atol=1e-4)


def test_mirror_small_cnn_parameters_and_errors() -> None:
    torch.manual_seed(0)
    net = SmallCNN(widths=(8, 16, 32, 64), mirror=True)
    plain = SmallCNN(widths=(8, 16, 32, 64))
    conv_params = [p for p in net.parameters() if p.dim() == 4]
    plain_conv = [p for p in plain.parameters() if p.dim() == 4]
    assert sum(p.numel() for p in conv_params) * 2 == sum(p.numel() for p in plain_conv)
    net(torch.randn(4, 1, 28, 28)).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="mirror needs even widths"):
        SmallCNN(widths=(8, 16, 32, 63), mirror=True)
    with pytest.raises(ValueError, match="mirror needs even widths"):
        SmallCNN(stem_width=5, mirror=True)


def test_model_mirror_config_key() -> None:
    from contrastlab.config import Config, ConfigError, apply_overrides
    from contrastlab.methods import build_method
    from contrastlab.nn.precise_bn import recompute_bn_stats

    cfg = apply_overrides(Config(), ["method.name=simclr", "model.mirror=true", "model.width=8"])
    backbone = build_method(cfg, in_channels=1).backbone
    assert isinstance(backbone, SmallCNN) and backbone.mirror
    assert not build_method(Config(), in_channels=1).backbone.mirror
    # precise BN recomputes the paired statistics like any BatchNorm's
    images = torch.randn(16, 1, 28, 28)
    recompute_bn_stats(backbone, [images[:8], images[8:]])
    backbone.eval()
    torch.testing.assert_close(backbone(images), backbone(images.flip(-1)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="mirror is a small_cnn option"):
        cfg = apply_overrides(Config(), ["model.backbone=resnet18", "model.mirror=true"])
        build_method(cfg, in_channels=3)
