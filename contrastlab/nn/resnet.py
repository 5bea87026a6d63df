"""ResNet-18/34/50 backbones without the classifier (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016).

Written from the paper: stages of BasicBlocks (two 3×3 convolutions, expansion 1) for ResNet-18/34
and Bottlenecks (1×1 → 3×3 → 1×1, expansion 4) for ResNet-50; stage widths 64-128-256-512;
downsampling by stride 2 in the first block of stages 2-4 with a 1×1 projection shortcut
("option B"). The stride sits on the 3×3 convolution of the bottleneck (the "v1.5" placement used by
most public code; the paper puts it on the first 1×1).

``cifar_stem=True`` replaces the 7×7/stride-2 convolution + 3×3 max-pool with one 3×3/stride-1
convolution, the usual stem for 32×32 inputs (SimCLR's CIFAR experiments; SPEC §2, §3).

The final fully-connected layer is removed: ``forward`` maps images (B, C, H, W) to globally
average-pooled features (B, feat_dim), with ``feat_dim`` 512 (ResNet-18/34) or 2048 (ResNet-50).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity when shapes match, else 1×1 conv + BN (projection shortcut, paper's option B)."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection: (B, cin, H, W) → (B, width, H/s, W/s)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return torch.relu_(out)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (stride) → 1×1 expand (×4), each with BN, plus residual:
    (B, cin, H, W) → (B, 4·width, H/s, W/s)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x)
        return torch.relu_(out)


class ResNet(nn.Module):
    """Residual network trunk returning pooled features.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each of the four stages, e.g. (2, 2, 2, 2) for ResNet-18.
        in_channels: image channels (3 for RGB, 1 for Fashion-MNIST).
        cifar_stem: 3×3/stride-1 stem without max-pool (for 28-32 px inputs).
        zero_init_residual: zero the last BN γ of every block so each block starts as the identity
            (Goyal et al. 2017); off by default, as in the paper.

    Shapes: ``forward`` (B, in_channels, H, W) → (B, feat_dim).

    Raises:
        ValueError: if ``layers`` does not have four positive entries or ``in_channels`` < 1.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        in_channels: int = 3,
        cifar_stem: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be four positive block counts, got {tuple(layers)}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if cifar_stem:
            self.stem: nn.Module = nn.Sequential(
                _conv3x3(in_channels, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        stages: list[nn.Module] = []
        cin = 64
        for i, (n_blocks, width) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            blocks: list[nn.Module] = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, width, stride))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feat_dim: int = cin
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) float images → (B, feat_dim) pooled features."""
        if x.dim() != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


def resnet18(in_channels: int = 3, cifar_stem: bool = False, **kw: bool) -> ResNet:
    """ResNet-18: BasicBlock × (2, 2, 2, 2), feat_dim 512."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, cifar_stem, **kw)


def resnet34(in_channels: int = 3, cifar_stem: bool = False, **kw: bool) -> ResNet:
    """ResNet-34: BasicBlock × (3, 4, 6, 3), feat_dim 512."""
    return ResNet(BasicBlock, (3, 4, 6, 3), in_channels, cifar_stem, **kw)


def resnet50(in_channels: int = 3, cifar_stem: bool = False, **kw: bool) -> ResNet:
    """ResNet-50: Bottleneck × (3, 4, 6, 3), feat_dim 2048."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, cifar_stem, **kw)
