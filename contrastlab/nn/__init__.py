"""contrastlab.nn: backbones, projection/prediction heads, EMA updater, feature queue.

A backbone is any ``nn.Module`` mapping float images (B, C, H, W) to features (B, F) with a
``feat_dim: int`` attribute; the registered ones are built with ``build_backbone``.
"""

from contrastlab.nn.backbones import BACKBONES, build_backbone
from contrastlab.nn.ema import EMAUpdater, byol_momentum, copy_frozen, ema_update
from contrastlab.nn.heads import (
    ProjectionHead,
    byol_predictor,
    byol_projector,
    moco_v2_head,
    simclr_head,
)
from contrastlab.nn.precise_bn import recompute_bn_stats
from contrastlab.nn.queue import FeatureQueue
from contrastlab.nn.resnet import ResNet, resnet18, resnet34, resnet50
from contrastlab.nn.small_cnn import SmallCNN
from contrastlab.nn.split_bn import (
    SplitBatchNorm1d,
    SplitBatchNorm2d,
    convert_split_batch_norm,
    split_batch_norm,
)

__all__ = [
    "BACKBONES",
    "EMAUpdater",
    "FeatureQueue",
    "ProjectionHead",
    "ResNet",
    "SmallCNN",
    "SplitBatchNorm1d",
    "SplitBatchNorm2d",
    "build_backbone",
    "byol_momentum",
    "byol_predictor",
    "byol_projector",
    "convert_split_batch_norm",
    "copy_frozen",
    "ema_update",
    "moco_v2_head",
    "recompute_bn_stats",
    "resnet18",
    "resnet34",
    "resnet50",
    "simclr_head",
    "split_batch_norm",
]
