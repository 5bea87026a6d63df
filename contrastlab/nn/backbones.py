"""Backbone registry: one table from names to constructors.

Every backbone maps float images (B, C, H, W) to pooled features (B, feat_dim) and exposes
``feat_dim``. The rest of contrastlab (methods, trainer, eval) needs nothing more: any user
``nn.Module`` with that forward signature and a ``feat_dim: int`` attribute can be used in place of
a registered backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from contrastlab.nn.resnet import resnet18, resnet34, resnet50
from contrastlab.nn.small_cnn import SmallCNN

__all__ = ["BACKBONES", "build_backbone"]


def _small_cnn(in_channels: int = 1, cifar_stem: bool = False, **kw: Any) -> nn.Module:
    # The small CNN has a single stem for every input size; ``cifar_stem`` is accepted and ignored.
    del cifar_stem
    return SmallCNN(in_channels=in_channels, **kw)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "small_cnn": _small_cnn,
}


def build_backbone(
    name: str, in_channels: int = 3, cifar_stem: bool = False, **kw: Any
) -> nn.Module:
    """Build a registered backbone by name.

    Args:
        name: one of ``BACKBONES`` ("resnet18", "resnet34", "resnet50", "small_cnn").
        in_channels: image channels.
        cifar_stem: ResNet 3×3/stride-1 stem without max-pool (ignored by "small_cnn").
        **kw: passed to the constructor (e.g. ``widths`` for "small_cnn",
            ``zero_init_residual`` for the ResNets).

    Returns:
        A module mapping (B, in_channels, H, W) → (B, feat_dim), with a ``feat_dim`` attribute.

    Raises:
        ValueError: unknown ``name`` (the message lists the known names).
    """
    try:
        ctor = BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}"
        ) from None
    return ctor(in_channels=in_channels, cifar_stem=cifar_stem, **kw)
