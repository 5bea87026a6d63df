"""Contrastive losses: stateless functions, thin ``nn.Module`` wrappers, and one registry.

Every loss L2-normalises its raw embedding inputs itself. Softmax-based losses (NT-Xent,
multi-view NT-Xent, SupCon, MoCo, the hard contrastive loss) share one masked log-softmax path,
:func:`contrastlab.ops.contrastive_loss`, and take ``temperature`` as a float or a
:class:`~contrastlab.temperature.TemperaturePolicy`.

Example::

    >>> import torch
    >>> from contrastlab.losses import nt_xent, supcon
    >>> from contrastlab.temperature import DySTreSS
    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = nt_xent(z1, z2, temperature=DySTreSS(0.07, 0.2))
    >>> loss_sup = supcon(torch.stack([z1, z2], 1), labels=torch.arange(8) % 2)
"""

from contrastlab.losses.info_nce import hard_nt_xent, multiview_nt_xent, nt_xent
from contrastlab.losses.moco import moco_info_nce
from contrastlab.losses.modules import (
    AlignUniformLoss,
    BYOLLoss,
    HardNTXentLoss,
    HardSimpleLoss,
    MoCoLoss,
    NTXentLoss,
    SimpleLoss,
    SupConLoss,
)
from contrastlab.losses.registry import LOSSES, LossSpec, get_loss
from contrastlab.losses.regression import (
    align_uniform_loss,
    alignment_loss,
    byol_loss,
    uniformity_loss,
)
from contrastlab.losses.simple import hard_simple_loss, simple_loss
from contrastlab.losses.supcon import supcon

__all__ = [
    "LOSSES",
    "AlignUniformLoss",
    "BYOLLoss",
    "HardNTXentLoss",
    "HardSimpleLoss",
    "LossSpec",
    "MoCoLoss",
    "NTXentLoss",
    "SimpleLoss",
    "SupConLoss",
    "align_uniform_loss",
    "alignment_loss",
    "byol_loss",
    "get_loss",
    "hard_nt_xent",
    "hard_simple_loss",
    "moco_info_nce",
    "multiview_nt_xent",
    "nt_xent",
    "simple_loss",
    "supcon",
    "uniformity_loss",
]
