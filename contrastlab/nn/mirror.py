"""Layers that commute with a left-right mirror, for an encoder whose features are mirror-invariant.

A mirrored image should have the same representation. Contrastive training only *learns* that
from the flips in its views, and imperfectly: averaging a trained small CNN's features over an
image and its mirror image raised its linear probe by 0.1–0.56 points (benchmarks/training,
fifteenth round). These layers build the invariance into the network instead, as a group
convolution over the two-element group {identity, mirror} (Cohen & Welling 2016, "Group
Equivariant Convolutional Networks"; Dieleman et al. 2016, "Exploiting Cyclic Symmetry in
Convolutional Neural Networks"), at the FLOPs of the plain layers and half their parameters.

Layout: a map of C channels (C even) holds two halves [A | B] with channel k of B the mirror
partner of channel k of A. The mirror acts on such a map z as ``T(z) = swap_halves(flip_w(z))``.
Every layer here satisfies ``layer(T(z)) = T(layer(z))``:

* :class:`MirrorConv2d` learns the A-half's filters V and builds the B-half's as V's mirror
  images, read over the input's partner channels: ``W = cat(V, flip_w(V[:, perm]))``;
* :class:`PairedBatchNorm2d` normalises each pair (A_k, B_k) with shared statistics and affine
  parameters, so it commutes with the swap in training and evaluation mode alike;
* :func:`mirror_max_pool2d` pools 2×2 windows (stride 2) along an even side and 3-wide windows
  (stride 2, the same output size) along an odd one, whose windows are centred symmetrically:
  a 2×2 pool of a 7-wide map drops its last column, so it does not commute with a flip;
* :func:`orbit_features` turns pooled (B, C) features [a | b] into the invariant
  [max(a, b) | min(a, b)], which loses nothing but the orientation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MirrorConv2d",
    "MirrorMaxPool2d",
    "PairedBatchNorm2d",
    "halves_perm",
    "mirror_max_pool2d",
    "orbit_features",
    "space_to_depth_perm",
]


def halves_perm(channels: int) -> Tensor:
    """The mirror's channel permutation of a [A | B] map: swap the halves, (channels,) int64."""
    if channels < 2 or channels % 2:
        raise ValueError(f"channels must be even and >= 2, got {channels}")
    half = channels // 2
    return torch.cat([torch.arange(half, channels), torch.arange(half)])


def space_to_depth_perm(in_channels: int) -> Tensor:
    """The mirror's channel permutation after ``PixelUnshuffle(2)`` of an image with
    ``in_channels`` channels: channel c·4 + 2·dy + dx holds the pixel at offset (dy, dx) of each
    2×2 patch, and a mirror swaps dx = 0 and dx = 1, (4·in_channels,) int64."""
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    return torch.arange(4 * in_channels) ^ 1


class MirrorConv2d(nn.Module):
    """A bias-free 2-D convolution that commutes with the mirror (see the module docstring).

    Args:
        in_channels, out_channels: channel counts; ``out_channels`` even (A and B halves).
        kernel_size: square kernel, padded by ``kernel_size // 2`` on every side (odd sizes keep
            the padding symmetric).
        in_perm: the mirror's permutation of the input channels, an involution of shape
            (in_channels,); None for inputs the mirror only flips (an image's own channels).

    Shapes: (N, in_channels, H, W) → (N, out_channels, H, W). Parameters: ``weight`` of shape
    (out_channels / 2, in_channels, k, k), initialised as Kaiming-normal (fan-out) for the full
    layer.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, in_perm: Tensor | None = None
    ) -> None:
        super().__init__()
        if out_channels < 2 or out_channels % 2:
            raise ValueError(f"out_channels must be even and >= 2, got {out_channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        perm = torch.arange(in_channels) if in_perm is None else in_perm.to(torch.long)
        if perm.shape != (in_channels,) or not torch.equal(
            torch.sort(perm).values, torch.arange(in_channels)
        ):
            raise ValueError(f"in_perm must be a permutation of range({in_channels})")
        if not torch.equal(perm[perm], torch.arange(in_channels)):
            raise ValueError(
                "in_perm must be an involution (a mirror applied twice is the identity)"
            )
        self.register_buffer("in_perm", perm, persistent=False)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(
            torch.empty(out_channels // 2, in_channels, kernel_size, kernel_size)
        )
        std = math.sqrt(2.0 / (out_channels * kernel_size * kernel_size))
        nn.init.normal_(self.weight, 0.0, std)

    def full_weight(self) -> Tensor:
        """The convolution's (out_channels, in_channels, k, k) weight: V and its mirror images."""
        perm: Tensor = self.in_perm  # type: ignore[assignment]
        return torch.cat([self.weight, self.weight[:, perm].flip(-1)])

    def forward(self, x: Tensor) -> Tensor:
        weight = self.full_weight()
        if _channels_last(self.weight) or _channels_last(x):
            # oneDNN picks the output's layout from the input's and the weight's: keep a
            # channels-last network channels-last (with the weight ``torch.cat`` returns, the
            # mirrored CNN ran in NCHW and 1.6× slower)
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, padding=self.padding)


def _channels_last(t: Tensor) -> bool:
    """Whether a 4-D tensor is laid out channels-last (and not also plainly contiguous)."""
    if t.dim() != 4 or t.is_contiguous():
        return False
    return t.is_contiguous(memory_format=torch.channels_last)


class PairedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over a [A | B] map with one set of statistics and affine parameters per pair.

    The (N, C, H, W) input is viewed as (N, C/2, H, 2W) (channels-last inputs) or (2N, C/2, H, W)
    (contiguous ones) without a copy, so the native kernel pools A_k's and B_k's values.
    ``num_features`` is C/2; the running statistics, ``weight`` and ``bias`` have C/2 entries.
    It is a ``BatchNorm2d``, so :func:`contrastlab.nn.recompute_bn_stats` treats it as one; but
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` would replace it by a plain C/2-channel layer
    that rejects the C-channel input.
    """

    def __init__(self, channels: int, **kw: object) -> None:
        if channels < 2 or channels % 2:
            raise ValueError(f"channels must be even and >= 2, got {channels}")
        super().__init__(channels // 2, **kw)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 2 * self.num_features:
            raise ValueError(
                f"x must have shape (N, {2 * self.num_features}, H, W), got {tuple(x.shape)}"
            )
        n, c, h, w = x.shape
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            paired = x.permute(0, 2, 3, 1).reshape(n, h, 2 * w, c // 2).permute(0, 3, 1, 2)
            out = super().forward(paired)
            return out.permute(0, 2, 3, 1).reshape(n, h, w, c).permute(0, 3, 1, 2)
        out = super().forward(x.reshape(2 * n, c // 2, h, w))
        return out.reshape(n, c, h, w)


def mirror_max_pool2d(x: Tensor) -> Tensor:
    """Max-pool (N, C, H, W) → (N, C, H // 2, W // 2) with windows placed symmetrically: 2 wide
    along an even side, 3 wide along an odd one (stride 2 both), so that it commutes with flips."""
    if x.dim() != 4 or min(x.shape[-2:]) < 2:
        raise ValueError(f"x must have shape (N, C, H, W) with H, W >= 2, got {tuple(x.shape)}")
    kernel = (2 + x.shape[-2] % 2, 2 + x.shape[-1] % 2)
    return F.max_pool2d(x, kernel_size=kernel, stride=2)


class MirrorMaxPool2d(nn.Module):
    """Module form of :func:`mirror_max_pool2d`."""

    def forward(self, x: Tensor) -> Tensor:
        return mirror_max_pool2d(x)


def orbit_features(z: Tensor) -> Tensor:
    """Pooled [a | b] features (B, C) → mirror-invariant [max(a, b) | min(a, b)] (B, C)."""
    if z.dim() != 2 or z.shape[1] % 2:
        raise ValueError(f"z must have shape (B, C) with C even, got {tuple(z.shape)}")
    a, b = z.chunk(2, dim=1)
    # max = (s + d) / 2 and min = (s - d) / 2 with s = a + b, d = |a - b|: both symmetric in a
    # and b bit for bit, and cheaper to differentiate than maximum/minimum (masked fills)
    total, gap = a + b, (a - b).abs()
    return torch.cat([total + gap, total - gap], dim=1) * 0.5
