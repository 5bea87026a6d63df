"""ViewSpec's field checks name the field, and the crop's centre fallback matches torchvision."""

from __future__ import annotations

import pytest
import torch

from contrastlab.data import ViewSpec, make_augment
from contrastlab.data.augment_ops import sample_crop_boxes


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("blur_sigma", (0.0, 1.0), "blur_sigma must satisfy 0 < lo <= hi"),
        ("blur_sigma", (2.0, 1.0), "blur_sigma must satisfy 0 < lo <= hi"),
        ("blur_kernel_frac", 0.0, r"blur_kernel_frac must be in \(0, 1\]"),
        ("erase_value", 1.5, r"erase_value must be in \[0, 1\] or None"),
        ("solarize_threshold", 0.5, r"solarize_threshold must be a pair \(lo, hi\), got 0.5"),
        ("scale", (0.2, 0.5, 1.0), r"scale must be a pair"),
    ],
)
def test_bad_fields_are_refused_by_name(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ViewSpec(**{field: value})  # type: ignore[arg-type]


def test_a_scalar_threshold_override_names_the_override() -> None:
    with pytest.raises(ValueError, match="solarize_threshold must be a pair"):
        make_augment("grayscale", (0.3,), (0.3,), solarize_threshold=0.5)


def test_the_centre_fallback_floors_odd_margins_as_torchvision_does() -> None:
    # An impossible area (scale 1, ratio 1 on a 10 x 7 image) leaves only the fallback: the
    # centre crop 7 x 7, whose top is (10 - 7) // 2 = 1 (rounding half to even gave 2).
    boxes = sample_crop_boxes(3, 10, 7, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    assert boxes.tolist() == [[1.0, 0.0, 7.0, 7.0]] * 3
    boxes = sample_crop_boxes(1, 7, 12, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    assert boxes.tolist() == [[0.0, 2.0, 7.0, 7.0]]  # (12 - 7) // 2 = 2
