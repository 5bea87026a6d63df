"""Any `nn.Module` a user passes trains as the encoder, evaluates, and re-evaluates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from contrastlab.config import Config, apply_overrides
from contrastlab.engine.run import evaluate_saved_run, run
from contrastlab.methods import build_method
from contrastlab.methods.registry import infer_feat_dim

TINY = [
    "data.train_subset=512",
    "data.batch_size=128",
    "train.epochs=1",
    "model.proj_hidden_dim=32",
    "model.proj_dim=16",
    "train.quiet=true",
    "train.diagnostics_samples=256",
    "train.threads=1",
    "eval.linear_epochs=2",
    "eval.knn_k=20",
]


def _encoder() -> nn.Module:
    """A user's encoder with no ``feat_dim`` attribute: (B, 1, 28, 28) → (B, 12)."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def test_user_backbone_trains_evaluates_and_reevaluates(tmp_path: Path) -> None:
    out = tmp_path / "run"
    before = {k: v.clone() for k, v in _encoder().state_dict().items()}
    encoder = _encoder()
    summary = run(apply_overrides(Config(), [*TINY, f"train.out={out}"]), backbone=encoder)
    assert 10.0 < summary["linear_top1"] <= 100.0
    assert "untrained_linear_top1" in summary
    assert "Conv2d(1, 12" in (out / "custom_backbone.txt").read_text()
    # the user's module itself was trained
    assert not torch.equal(encoder.state_dict()["0.weight"], before["0.weight"])

    with pytest.raises(ValueError, match="user-supplied backbone"):
        evaluate_saved_run(out)
    again = evaluate_saved_run(out, backbone=_encoder())
    # same weights and data; the memory format may differ, which can flip a vote or two
    assert again["knn_top1"] == pytest.approx(summary["knn_top1"], abs=0.05)


def test_feat_dim_is_measured_or_read() -> None:
    assert infer_feat_dim(_encoder(), (1, 28, 28)) == 12
    declared = _encoder()
    declared.feat_dim = 12  # type: ignore[assignment]
    assert infer_feat_dim(declared, (1, 28, 28)) == 12
    method = build_method(apply_overrides(Config(), TINY), 1, backbone=_encoder())
    assert method.feat_dim == 12
    with pytest.raises(ValueError, match=r"\(B, F\); got \(2, 4, 28, 28\)"):
        infer_feat_dim(nn.Conv2d(1, 4, 3, padding=1), (1, 28, 28))
