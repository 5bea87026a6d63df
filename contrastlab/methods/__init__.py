"""Methods: SimCLR, MoCo v2, SupCon, BYOL — one readable file each, listed in :data:`METHODS`.

Each combines encoder + head(s) + loss + temperature policy, owns its state, and exposes one
``training_step(views, labels, step=, progress=) -> StepOutput`` plus ``after_optimizer_step``.
"""

from contrastlab.methods.base import Method, StepOutput
from contrastlab.methods.byol import BYOL
from contrastlab.methods.moco import MoCo
from contrastlab.methods.registry import (
    DEFAULT_LR,
    DEFAULT_TEMPERATURE,
    DEFAULT_WARMUP,
    GENERAL_LR,
    GENERAL_WARMUP,
    METHOD_LOSSES,
    METHODS,
    PROJ_LAST_BN,
    SMALL_CNN_DEFAULTS,
    SYMMETRIC,
    build_method,
    build_temperature,
    default_lr,
    default_warmup,
    with_method_defaults,
    with_model_defaults,
)
from contrastlab.methods.simclr import PAIR_LOSSES, SimCLR
from contrastlab.methods.supcon import SupCon

__all__ = [
    "BYOL",
    "DEFAULT_LR",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_WARMUP",
    "GENERAL_LR",
    "GENERAL_WARMUP",
    "METHODS",
    "METHOD_LOSSES",
    "PAIR_LOSSES",
    "PROJ_LAST_BN",
    "SMALL_CNN_DEFAULTS",
    "SYMMETRIC",
    "Method",
    "MoCo",
    "SimCLR",
    "StepOutput",
    "SupCon",
    "build_method",
    "build_temperature",
    "default_lr",
    "default_warmup",
    "with_method_defaults",
    "with_model_defaults",
]
