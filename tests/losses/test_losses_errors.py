"""Bad input raises ValueError/TypeError whose message names the offending argument and
says what was expected (a shape, a range, finiteness)."""

from __future__ import annotations

import re

import pytest
import torch

from contrastlab.losses import (
    alignment_loss,
    byol_loss,
    hard_nt_xent,
    hard_simple_loss,
    moco_info_nce,
    multiview_nt_xent,
    nt_xent,
    simple_loss,
    supcon,
    uniformity_loss,
)
from contrastlab.temperature import Cosine, Fixed

SHAPE = r"shape|dim|\(|\[|\d"  # mentions the expected shape / a size
RANGE = r">|<|≥|≤|positive|range|\(0|\d"  # mentions the allowed range
FINITE = r"nan|inf|finite"
ANY = r"."


def r(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def with_value(t, idx, value):
    t = t.clone()
    t[idx] = value
    return t


Z = r(4, 3)
FEATS = r(4, 2, 3)
LABELS = torch.tensor([0, 1, 0, 1])

CASES = {
    # ---- nt_xent
    "nt_xent/N mismatch": (lambda: nt_xent(r(4, 3), r(5, 3)), r"z1|z2", SHAPE),
    "nt_xent/D mismatch": (lambda: nt_xent(r(4, 3), r(4, 5)), r"z1|z2", SHAPE),
    "nt_xent/1-D z1": (lambda: nt_xent(r(4), r(4, 3)), r"z1", SHAPE),
    "nt_xent/1-D z2": (lambda: nt_xent(r(4, 3), r(3)), r"z2", SHAPE),
    "nt_xent/3-D z1": (lambda: nt_xent(r(4, 3, 2), r(4, 3, 2)), r"z1", SHAPE),
    "nt_xent/N=1": (lambda: nt_xent(r(1, 3), r(1, 3)), r"z1|z2", r"\d|at least|least"),
    "nt_xent/NaN z1": (lambda: nt_xent(with_value(Z, (1, 2), float("nan")), r(4, 3)), r"z1",
                       FINITE),
    "nt_xent/Inf z2": (lambda: nt_xent(Z, with_value(r(4, 3), (0, 0), float("inf"))), r"z2",
                       FINITE),
    "nt_xent/NaN negatives": (lambda: nt_xent(Z, Z, negatives=with_value(r(2, 3), 0, float("nan"))),
                              r"negatives", FINITE),
    "nt_xent/negatives D": (lambda: nt_xent(Z, Z, negatives=r(2, 4)), r"negatives", SHAPE),
    "nt_xent/tau 0": (lambda: nt_xent(Z, Z, 0.0), r"temperature|tau|τ", RANGE),
    "nt_xent/tau negative": (lambda: nt_xent(Z, Z, -0.5), r"temperature|tau|τ", RANGE),
    "nt_xent/Fixed(0)": (lambda: nt_xent(Z, Z, Fixed(0.0)), r"temperature|tau|τ", RANGE),
    "nt_xent/Fixed(-1)": (lambda: Fixed(-1.0), r"temperature|tau|τ", RANGE),
    "nt_xent/reduction": (lambda: nt_xent(Z, Z, reduction="avg"), r"reduction", r"mean"),
    "nt_xent/Cosine without step": (lambda: nt_xent(Z, Z, Cosine()), r"step", ANY),
    # ---- multiview
    "multiview/V=1": (lambda: multiview_nt_xent(r(4, 1, 3)), r"views", r"\d|at least"),
    "multiview/2-D": (lambda: multiview_nt_xent(r(4, 3)), r"views", SHAPE),
    "multiview/NaN": (lambda: multiview_nt_xent(with_value(FEATS, (0, 1, 0), float("nan"))),
                      r"views", FINITE),
    # ---- supcon
    "supcon/2-D features": (lambda: supcon(r(4, 3), LABELS), r"features", SHAPE),
    "supcon/labels length": (lambda: supcon(FEATS, torch.tensor([0, 1, 0])), r"labels", SHAPE),
    "supcon/labels float": (lambda: supcon(FEATS, LABELS.float()), r"labels", r"int|dtype|long"),
    "supcon/labels 2-D": (lambda: supcon(FEATS, LABELS[:, None]), r"labels", SHAPE),
    "supcon/labels and mask": (lambda: supcon(FEATS, LABELS, mask=torch.eye(4)), r"labels",
                               r"mask"),
    "supcon/mask shape": (lambda: supcon(FEATS, mask=torch.ones(4, 5)), r"mask", SHAPE),
    "supcon/NaN features": (lambda: supcon(with_value(FEATS, (2, 0, 1), float("nan")), LABELS),
                            r"features", FINITE),
    "supcon/tau 0": (lambda: supcon(FEATS, LABELS, temperature=0.0), r"temperature|tau|τ", RANGE),
    "supcon/variant": (lambda: supcon(FEATS, LABELS, variant="mid"), r"variant", r"out|in"),
    "supcon/contrast_mode": (lambda: supcon(FEATS, LABELS, contrast_mode="some"),
                             r"contrast_mode", r"all|one"),
    "supcon/N=1": (lambda: supcon(r(1, 1, 3)), r"features", r"\d|at least"),
    # ---- moco
    "moco/q k mismatch": (lambda: moco_info_nce(r(4, 3), r(5, 3), r(6, 3)), r"\bq\b|\bk\b", SHAPE),
    "moco/queue D": (lambda: moco_info_nce(Z, Z, r(6, 4)), r"queue", SHAPE),
    "moco/queue 1-D": (lambda: moco_info_nce(Z, Z, r(6)), r"queue", SHAPE),
    "moco/NaN q": (lambda: moco_info_nce(with_value(Z, 0, float("nan")), Z, r(6, 3)), r"\bq\b",
                   FINITE),
    "moco/Inf queue": (lambda: moco_info_nce(Z, Z, with_value(r(6, 3), 5, float("inf"))),
                       r"queue", FINITE),
    "moco/labels without queue_labels": (lambda: moco_info_nce(Z, Z, r(6, 3), labels=LABELS),
                                         r"queue_labels", ANY),
    "moco/queue_labels length": (lambda: moco_info_nce(
        Z, Z, r(6, 3), labels=LABELS, queue_labels=torch.zeros(5, dtype=torch.long)),
                                 r"queue_labels", SHAPE),
    "moco/labels length": (lambda: moco_info_nce(Z, Z, r(6, 3), labels=LABELS[:3],
                                                 queue_labels=torch.zeros(6, dtype=torch.long)),
                           r"labels", SHAPE),
    "moco/labels float": (lambda: moco_info_nce(Z, Z, r(6, 3), labels=LABELS.float(),
                                                queue_labels=torch.zeros(6, dtype=torch.long)),
                          r"labels", r"int|dtype|long"),
    "moco/tau negative": (lambda: moco_info_nce(Z, Z, r(6, 3), -0.2), r"temperature|tau|τ", RANGE),
    # ---- simple / hard
    "simple/N mismatch": (lambda: simple_loss(r(4, 3), r(3, 3)), r"z1|z2", SHAPE),
    "simple/NaN z1": (lambda: simple_loss(with_value(Z, 0, float("nan")), Z), r"z1", FINITE),
    "hard_simple/top_k too large": (lambda: hard_simple_loss(Z, Z, 0.5, top_k=7), r"top_k", r"\d"),
    "hard_simple/top_k 0": (lambda: hard_simple_loss(Z, Z, 0.5, top_k=0), r"top_k", r"\d"),
    "hard_nt_xent/top_k too large": (lambda: hard_nt_xent(Z, Z, 0.5, top_k=7), r"top_k", r"\d"),
    "hard_nt_xent/top_k too large with negatives": (
        lambda: hard_nt_xent(Z, Z, 0.5, top_k=10, negatives=r(3, 3)), r"top_k", r"\d"),
    "hard_nt_xent/top_k 0": (lambda: hard_nt_xent(Z, Z, 0.5, top_k=0), r"top_k", r"\d"),
    "hard_nt_xent/alpha 0": (lambda: hard_nt_xent(Z, Z, 0.5, alpha=0.0), r"alpha", RANGE),
    "hard_nt_xent/alpha > 1": (lambda: hard_nt_xent(Z, Z, 0.5, alpha=1.5), r"alpha", RANGE),
    "hard_nt_xent/alpha negative": (lambda: hard_nt_xent(Z, Z, 0.5, alpha=-0.1), r"alpha", RANGE),
    "hard_nt_xent/both": (lambda: hard_nt_xent(Z, Z, 0.5, top_k=2, alpha=0.5), r"top_k", r"alpha"),
    "hard_nt_xent/neither": (lambda: hard_nt_xent(Z, Z, 0.5), r"top_k", r"alpha"),
    "hard_nt_xent/tau 0": (lambda: hard_nt_xent(Z, Z, 0.0, top_k=2), r"temperature|tau|τ", RANGE),
    # ---- byol / alignment / uniformity
    "byol/shape": (lambda: byol_loss(r(4, 3), r(4, 5)), r"\bp\b|\bz\b", SHAPE),
    "byol/1-D": (lambda: byol_loss(r(4), r(4)), r"\bp\b|\bz\b", SHAPE),
    "byol/NaN p": (lambda: byol_loss(with_value(Z, 0, float("nan")), Z), r"\bp\b", FINITE),
    "alignment_loss/shape": (lambda: alignment_loss(r(4, 3), r(5, 3)), r"z1|z2", SHAPE),
    "uniformity_loss/1-D": (lambda: uniformity_loss(r(4)), r"\bz\b", SHAPE),
    "uniformity_loss/N=1": (lambda: uniformity_loss(r(1, 3)), r"\bz\b", r"\d|at least"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_with_informative_message(case):
    fn, name, hint = CASES[case]
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    msg = str(info.value)
    assert re.search(name, msg), f"message does not name the argument ({name}): {msg!r}"
    assert re.search(hint, msg, re.IGNORECASE), f"message lacks the expectation ({hint}): {msg!r}"


def test_no_positives_is_not_an_error():
    """Anchors without positives are legal input: they give 0, never NaN."""
    out = supcon(r(3, 1, 4), labels=torch.tensor([0, 1, 2]), reduction="none")
    assert torch.equal(out, torch.zeros(3))
