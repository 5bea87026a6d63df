"""MoCo's InfoNCE against a queue of keys, unsupervised or label-aware (He et al. 2020)."""

from __future__ import annotations

from torch import Tensor

from contrastlab.losses._common import Reduction, check_reduction, reduce, tau_fn
from contrastlab.ops import (
    Backend,
    check_embeddings,
    check_labels,
    check_same_shape,
    contrastive_loss,
    normalize,
)
from contrastlab.temperature import TemperatureLike

__all__ = ["moco_info_nce"]


def moco_info_nce(
    q: Tensor,
    k: Tensor,
    queue: Tensor,
    temperature: TemperatureLike = 0.2,
    *,
    queue_labels: Tensor | None = None,
    labels: Tensor | None = None,
    reduction: Reduction = "mean",
    step: int | None = None,
    backend: Backend = "auto",
) -> Tensor:
    """MoCo's queue InfoNCE (He et al. 2020; v2 uses τ = 0.2, v1 τ = 0.07).

    Per query: logits ``[q_i·k_i, q_i·queue_1, ..., q_i·queue_K] / τ``, cross-entropy with target
    0. Other keys of the batch are not in the logits. With ``labels`` and ``queue_labels``
    (supervised MoCo), queue entries of the query's class are positives too, and the loss is
    SupCon's L_out over ``{k_i} ∪ {queue_j : label_j = label_i}``. Inputs are L2-normalised here;
    ``k`` and ``queue`` are used as given (the method computes keys without gradient). The loss is
    stateless: the caller owns the queue and enqueues after the optimiser step.

    Args:
        q: ``(N, D)`` queries (N ≥ 2).
        k: ``(N, D)`` keys, ``k_i`` the positive of ``q_i``.
        queue: ``(K, D)`` negatives (K ≥ 1).
        temperature: float or policy.
        queue_labels: ``(K,)`` int64 labels of the queue entries (−1 = unknown, never positive).
        labels: ``(N,)`` int64 labels of the queries. Both or neither of the two label arguments.
        reduction: "mean" / "sum" / "none" (``(N,)``).
        step, backend: as in :func:`contrastlab.losses.nt_xent`.

    Raises:
        ValueError/TypeError: shapes, N < 2, NaN/Inf, D mismatch, one label argument without the
            other, labels of wrong length or dtype, τ ≤ 0.
    """
    check_reduction(reduction)
    check_embeddings(q, "q", min_rows=2)
    check_embeddings(k, "k", min_rows=2)
    check_same_shape(q, k, "q", "k")
    check_embeddings(queue, "queue")
    if queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"queue must have shape (K, {q.shape[1]}) to match q's D; got {tuple(queue.shape)}"
        )
    if (labels is None) != (queue_labels is None):
        raise ValueError("give both labels and queue_labels (supervised MoCo) or neither")
    anchor_ids = contrast_ids = None
    if labels is not None and queue_labels is not None:
        anchor_ids = check_labels(labels, q.shape[0], "labels").to(q.device)
        contrast_ids = check_labels(
            queue_labels, queue.shape[0], "queue_labels", allow_negative=True
        ).to(q.device)
    qn = normalize(q)
    loss, has_pos = contrastive_loss(
        qn,
        normalize(queue).to(qn.dtype),
        tau_fn(temperature, step),
        anchor_ids=anchor_ids,
        contrast_ids=contrast_ids,
        paired=normalize(k).to(qn.dtype),
        backend=backend,
    )
    return reduce(loss, has_pos, reduction)
