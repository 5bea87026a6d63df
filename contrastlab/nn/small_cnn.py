"""A small, CPU-fast convolutional encoder for 28×28 images (Fashion-MNIST, MNIST).

Layout (default widths 32-64-128-1024, input (B, C, 28, 28)):

    PixelUnshuffle(2)                 (B, 4C, 14, 14)   space-to-depth "patchify" stem
    conv3×3 → maxpool2 → BN → ReLU    (B, 32, 7, 7)
    conv3×3 → BN → ReLU               (B, 64, 7, 7)
    conv3×3 → maxpool2 → BN → ReLU    (B, 128, 3, 3)
    conv1×1 → BN → ReLU               (B, 1024, 3, 3)
    global average pool               (B, 1024)

Design choices, each chosen by measurement (forward+backward, batch 512, 2 Zen-3 threads, fp32
channels_last, ≈1.9k views per CPU-second vs ≈0.6k for plain conv-BN-ReLU-pool at 28×28):

* Space-to-depth stem instead of a 3×3 convolution at 28×28: a 28×28×32 activation costs more in
  BatchNorm/ReLU memory traffic than all the convolutions that follow. A 3×3 convolution over 2×2
  pixel patches has a 6×6 receptive field at stride 2 with no extra FLOPs.
* ``stem_width=C`` replaces the space-to-depth stem by a learned one at full resolution
  (conv3×3 with C channels → max-pool 2 → BN → ReLU, pooled before BN as below). With C = 16
  it adds 0.1 M multiply-adds per 28×28 image; every method uses it by default (see
  ``contrastlab.methods.SMALL_CNN_DEFAULTS``).
* Pool before BN/ReLU (as in Keller Jordan's airbench): normalisation and activation run on the
  4× smaller pooled map.
* 1×1 last convolution: the 3×3 map is already covered by the receptive field (24 px), and a
  1×1 keeps the network valid for any input ≥ 8 px with two pools (CIFAR's 32×32 gives a 4×4 final map).
* Stride-2 convolutions were avoided: oneDNN's stride-2 backward was ~4× slower here than
  conv + max-pool.

* A wide last unit (1024 = 32 × the first width): it runs on the 3×3 map, so it is cheap (1.2 M
  of the 5.9 M multiply-adds), and a wider representation is what the linear probe reads. In a
  SimCLR run of 4 epochs on Fashion-MNIST (seed 0, same steps), widths ending in 256 / 512 / 1024
  gave 85.65 / 87.33 / 88.47 % linear-probe and 81.0 / 81.8 / 81.2 % kNN top-1, for a full
  training step 1.00 / 1.05 / 1.29 × as long.

* The last ReLU and the global average pool are one autograd function
  (:func:`relu_global_mean`): the composed ops' backward on the wide 3×3 map took ~18 ms of a
  ~230 ms SimCLR step; fused, the backbone's forward+backward is ~6% faster.

* ``pools`` moves the second max-pool: after units 1 and 3 (above, the default) or after units
  1 and 2, which runs unit 3 on the 3×3 map. Unit 3 holds 3.6 M of the 5.9 M multiply-adds at
  7×7 and 0.66 M at 3×3, so a SimCLR model step (batch 256, two views) took 162 ms instead of
  264 ms, paired. In four-epoch runs (one seed) it cost SimCLR 1.1 linear-probe points per epoch
  and 0.8 at equal compute, and SupCon nothing per epoch, so SupCon uses it by default
  (``contrastlab.methods.SMALL_CNN_DEFAULTS``, which also widens every method's CNN to
  48-96-192-1024).

* ``mirror=True`` builds the same layout from the mirror-equivariant layers of
  :mod:`contrastlab.nn.mirror` (each unit's filters come in mirror-image pairs, BN is shared per
  pair, max-pools are placed symmetrically), and its features are the invariant
  [max(a, b) | min(a, b)] of each channel pair: the encoder maps an image and its mirror image to
  the same features, at the same FLOPs and half the convolution parameters. Every width (and
  ``stem_width``, if set) must then be even.

About 0.23 M parameters and 5.9 M multiply-adds per 1×28×28 image (3.0 M pooling after units 1
and 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from contrastlab.nn.mirror import (
    MirrorConv2d,
    MirrorMaxPool2d,
    PairedBatchNorm2d,
    halves_perm,
    orbit_features,
    space_to_depth_perm,
)

__all__ = ["SmallCNN", "relu_global_mean"]


class _ReLUGlobalMean(torch.autograd.Function):
    """``relu(x).mean(dim=(2, 3))`` with a one-pass backward.

    The composed ops' backward runs ``threshold_backward`` on the broadcast (stride-0) gradient
    of the mean against a channels-last activation, which took ~18 ms per step for the
    (512, 1024, 3, 3) last map of the small CNN (2 threads), more than its 1×1 convolution's
    forward. Here the backward is one fused multiply of the mask by the broadcast gradient.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        y = torch.relu(x)
        ctx.save_for_backward(y)
        return y.mean(dim=(2, 3))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors  # type: ignore[attr-defined]
        scale = grad / (y.shape[2] * y.shape[3])
        # y = relu(x) >= 0, so sign(y) is the float mask (y > 0), laid out like y; multiplying
        # into it in place took 0.8 ms for a (512, 1024, 2, 2) map where ``(y > 0) * scale``
        # (bool times float, broadcast) took 10 ms and then a copy into y's layout
        grad_x = torch.sign(y)
        return grad_x.mul_(scale[:, :, None, None])


def relu_global_mean(x: Tensor) -> Tensor:
    """ReLU followed by a global average pool, (B, C, H, W) → (B, C), with a fast backward
    (same values and gradients as ``torch.relu(x).mean(dim=(2, 3))``; once differentiable)."""
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    out: Tensor = _ReLUGlobalMean.apply(x)
    return out


def _unit(cin: int, cout: int, kernel: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel_size=kernel, padding=kernel // 2, bias=False)
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _mirror_unit(
    cin: int, cout: int, kernel: int, pool: bool, in_perm: Tensor | None
) -> nn.Sequential:
    layers: list[nn.Module] = [MirrorConv2d(cin, cout, kernel, in_perm=in_perm)]
    if pool:
        layers.append(MirrorMaxPool2d())
    # not in place: the paired BN returns a view, and an in-place ReLU on a view made autograd
    # run its backward through copies (5 ms of a ~120 ms forward+backward)
    layers += [PairedBatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU units with pooling and a global average pool.

    Args:
        in_channels: image channels (1 for Fashion-MNIST).
        widths: output channels of the four units; ``feat_dim = widths[-1]``.
        pools: which of units 1-3 end with a 2×2 max-pool (unit 4 never does).
        stem_width: 0 for the space-to-depth stem (``PixelUnshuffle(2)``: unit 1 reads the
            4·C pixels of each 2×2 patch); C > 0 for a learned stem at full resolution,
            conv3×3 (C channels) → max-pool 2 → BN → ReLU, which also halves H and W.
        mirror: build every unit from mirror-equivariant layers and return mirror-invariant
            features (see the module docstring); needs even widths and ``stem_width``.

    Shapes: ``forward`` (B, in_channels, H, W) with H, W even and ≥ ``min_size``
    (8, or 16 when all three units pool) → (B, widths[-1]).

    Raises:
        ValueError: if ``widths`` is not four positive ints, ``pools`` not three bools,
            ``in_channels`` < 1, ``stem_width`` < 0, an odd width with ``mirror``, or the input
            is not 4-D with even H, W ≥ ``min_size``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128, 1024),
        pools: Sequence[bool] = (True, False, True),
        stem_width: int = 0,
        mirror: bool = False,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or any(w < 1 for w in widths):
            raise ValueError(f"widths must be four positive ints, got {widths}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        pools = tuple(bool(p) for p in pools)
        if len(pools) != 3:
            raise ValueError(f"pools must be three bools (units 1-3), got {pools}")
        if stem_width < 0:
            raise ValueError(f"stem_width must be >= 0 (0: space-to-depth stem), got {stem_width}")
        if mirror and any(w % 2 for w in (*widths, stem_width)):
            raise ValueError(
                f"mirror needs even widths and stem_width, got {widths} and {stem_width}"
            )
        w0, w1, w2, w3 = widths
        self.stem: nn.Module
        if stem_width:
            self.stem = (
                _mirror_unit(in_channels, stem_width, 3, True, None)
                if mirror
                else _unit(in_channels, stem_width, 3, pool=True)
            )
        else:
            self.stem = nn.PixelUnshuffle(2)
        self.stem_width = stem_width
        self.mirror = mirror
        cin = stem_width or 4 * in_channels
        if mirror:
            perm = halves_perm(stem_width) if stem_width else space_to_depth_perm(in_channels)
            self.unit1 = _mirror_unit(cin, w0, 3, pools[0], perm)
            self.unit2 = _mirror_unit(w0, w1, 3, pools[1], halves_perm(w0))
            self.unit3 = _mirror_unit(w1, w2, 3, pools[2], halves_perm(w1))
            self.unit4 = _mirror_unit(w2, w3, 1, False, halves_perm(w2))
        else:
            self.unit1 = _unit(cin, w0, 3, pool=pools[0])
            self.unit2 = _unit(w0, w1, 3, pool=pools[1])
            self.unit3 = _unit(w1, w2, 3, pool=pools[2])
            self.unit4 = _unit(w2, w3, 1, pool=False)
        self.feat_dim: int = w3
        self.pools = pools
        # the stem halves H and W and each pool halves them again; the last map must be >= 1
        self.min_size: int = max(8, 2 ** (sum(pools) + 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) float images → (B, feat_dim) pooled features."""
        if x.dim() != 4 or min(x.shape[-2:]) < self.min_size or x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(
                f"x must have shape (B, C, H, W) with even H, W >= {self.min_size}, "
                f"got {tuple(x.shape)}"
            )
        x = self.unit3(self.unit2(self.unit1(self.stem(x))))
        conv, bn, _relu = self.unit4
        features = relu_global_mean(bn(conv(x)))
        return orbit_features(features) if self.mirror else features
