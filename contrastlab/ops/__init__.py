"""Pure tensor primitives: validation, normalisation, blocked reductions and the contrastive core."""

from contrastlab.ops.checks import (
    check_embeddings,
    check_finite,
    check_labels,
    check_same_shape,
    normalize,
)
from contrastlab.ops.chunks import block_size_for, pairwise_logsumexp_offdiag, row_blocks
from contrastlab.ops.contrastive import (
    Backend,
    TauFn,
    Variant,
    contrastive_loss,
    contrastive_loss_dense,
)

__all__ = [
    "Backend",
    "TauFn",
    "Variant",
    "block_size_for",
    "check_embeddings",
    "check_finite",
    "check_labels",
    "check_same_shape",
    "contrastive_loss",
    "contrastive_loss_dense",
    "normalize",
    "pairwise_logsumexp_offdiag",
    "row_blocks",
]
