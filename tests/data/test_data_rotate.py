"""Random rotation of the views (``ViewSpec.rotate``, ``data.rotate``).

The sampling grid is checked against independent references: ``torch.rot90`` for quarter
turns, and the geometry of a single bright spot (where a rotation about the crop's centre,
a resize and a mirror must carry it) for any angle, box and flip.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from contrastlab.data import augment_ops as ops
from contrastlab.data.augment import ViewSpec, augment_view, make_augment

PLAIN = ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)


def _full_boxes(b: int, height: int, width: int) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0, float(height), float(width)]]).repeat(b, 1)


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16)])
def test_quarter_turns_equal_rot90(shape: tuple[int, int, int], padding: str) -> None:
    """+90 degrees is torch.rot90 (counter-clockwise as displayed), -90 and 180 likewise."""
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    side = shape[1]
    angle = torch.tensor([90.0, -90.0, 180.0, 0.0], dtype=torch.float64)
    out = ops.resized_crop(
        x,
        _full_boxes(4, side, side),
        torch.zeros(4, dtype=torch.bool),
        (side, side),
        padding=padding,
        angle=angle,
    )
    expected = [
        torch.rot90(x[0], 1, (-2, -1)),
        torch.rot90(x[1], -1, (-2, -1)),
        torch.rot90(x[2], 2, (-2, -1)),
        x[3],
    ]
    for got, want in zip(out, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_angle_zero_is_the_unrotated_crop(padding: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 28, 28, generator=g)
    boxes = ops.sample_crop_boxes(64, 28, 28, (0.2, 1.0), (3 / 4, 4 / 3), g)
    flip = torch.rand(64, generator=g) < 0.5
    plain = ops.resized_crop(x, boxes, flip, (20, 20), padding=padding)
    zero = ops.resized_crop(x, boxes, flip, (20, 20), padding=padding, angle=torch.zeros(64))
    torch.testing.assert_close(zero, plain, atol=1e-5, rtol=0)  # float32 rounding of the grid


def test_a_tiny_rotation_does_not_darken_the_edges_of_crops() -> None:
    """Crops that reach the image's border sample its edge pixels; a near-zero angle must
    not mix black into them (only the samples outside the image are black)."""
    ones = torch.ones(256, 1, 28, 28)
    spec = replace(PLAIN, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), rotate=0.001)
    view = augment_view(ones, spec, (20, 20), torch.Generator().manual_seed(6))
    assert view.min() > 1.0 - 1e-5


def _spot(
    b: int, height: int, width: int, centres: torch.Tensor, sigma: float = 1.2
) -> torch.Tensor:
    """(B, 1, height, width) images with one Gaussian spot each, at ``centres`` (B, 2) given
    as (x, y) in continuous pixel coordinates (pixel i covers [i, i + 1))."""
    dx = (torch.arange(width, dtype=torch.float64) + 0.5).view(1, 1, width)
    dx = dx - centres[:, 0].view(b, 1, 1)
    dy = (torch.arange(height, dtype=torch.float64) + 0.5).view(1, height, 1)
    dy = dy - centres[:, 1].view(b, 1, 1)
    return torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)).unsqueeze(1)


def _centroid(images: torch.Tensor) -> torch.Tensor:
    """(B, 2) (x, y) centroids of (B, 1, H, W) images, in continuous pixel coordinates."""
    _, _, height, width = images.shape
    mass = images.sum(dim=(1, 2, 3))
    xs = torch.arange(width, dtype=images.dtype) + 0.5
    ys = torch.arange(height, dtype=images.dtype) + 0.5
    cx = (images.sum(dim=(1, 2)) * xs).sum(dim=1) / mass
    cy = (images.sum(dim=(1, 3)) * ys).sum(dim=1) / mass
    return torch.stack([cx, cy], dim=1)


def _expected_position(
    spot: torch.Tensor,
    boxes: torch.Tensor,
    angle: torch.Tensor,
    flip: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Where a point of the input lands in the view, from the geometry: turn its offset from
    the box's centre counter-clockwise on screen (y pointing down), scale the box to the view,
    then mirror."""
    top, left, h, w = boxes.unbind(1)
    ox = spot[:, 0] - (left + w / 2)
    oy = spot[:, 1] - (top + h / 2)
    theta = torch.deg2rad(angle)
    # counter-clockwise on screen = clockwise in (x, y-down) coordinates
    rx = torch.cos(theta) * ox + torch.sin(theta) * oy
    ry = -torch.sin(theta) * ox + torch.cos(theta) * oy
    out_h, out_w = size
    x = out_w / 2 + rx * out_w / w
    y = out_h / 2 + ry * out_h / h
    x = torch.where(flip, out_w - x, x)
    return torch.stack([x, y], dim=1)


@pytest.mark.parametrize(("height", "width", "size"), [(28, 28, (56, 56)), (24, 36, (40, 64))])
def test_a_spot_moves_where_the_rotation_about_the_crop_centre_puts_it(
    height: int, width: int, size: tuple[int, int]
) -> None:
    b = 64
    g = torch.Generator().manual_seed(2)
    boxes = ops.sample_crop_boxes(b, height, width, (0.5, 1.0), (3 / 4, 4 / 3), g)
    top, left, h, w = boxes.unbind(1)
    # a spot well inside its box (so that it stays inside the turned view), away from centre
    frac = 0.3 + 0.4 * torch.rand(b, 2, generator=g, dtype=torch.float64)
    spot = torch.stack([left + frac[:, 0] * w, top + frac[:, 1] * h], dim=1).double()
    angle = torch.empty(b, dtype=torch.float64).uniform_(-180.0, 180.0, generator=g)
    flip = torch.rand(b, generator=g) < 0.5
    images = _spot(b, height, width, spot)
    out = ops.resized_crop(images, boxes.double(), flip, size, padding="zeros", angle=angle)
    expected = _expected_position(spot, boxes.double(), angle, flip, size)
    error = (_centroid(out) - expected).norm(dim=1)
    # the view magnifies ~1.5-4x; a small residual comes from bilinear sampling of the spot's tails
    assert error.max() < 0.35, error.max()
    # and the wrong sense of rotation would be far off (guards the test itself)
    wrong = _expected_position(spot, boxes.double(), -angle, flip, size)
    assert (_centroid(out) - wrong).norm(dim=1).max() > 3.0


def test_augment_view_draws_angles_per_sample_within_the_range() -> None:
    b, side = 256, 28
    centre = torch.full((b, 2), side / 2, dtype=torch.float64)
    offset = torch.tensor([6.0, 0.0], dtype=torch.float64)  # a spot 6 px right of the centre
    images = _spot(b, side, side, centre + offset).float()
    spec = replace(PLAIN, rotate=30.0)
    view = augment_view(images, spec, (side, side), torch.Generator().manual_seed(3))
    moved = _centroid(view.double()) - centre
    # angle of the spot as displayed: counter-clockwise turns move it up (negative y)
    angles = torch.rad2deg(torch.atan2(-moved[:, 1], moved[:, 0]))
    assert angles.abs().max() <= 30.0 + 1.0
    assert angles.min() < -20.0 and angles.max() > 20.0  # both senses, most of the range
    assert angles.std() > 12.0  # per sample, roughly uniform (std of U(-30, 30) is 17.3)
    # the same generator state gives the same views
    again = augment_view(images, spec, (side, side), torch.Generator().manual_seed(3))
    torch.testing.assert_close(view, again, rtol=0, atol=0)


def test_rotated_corners_are_black_and_rotate_zero_changes_nothing() -> None:
    x = torch.ones(32, 1, 28, 28)
    view = augment_view(x, replace(PLAIN, rotate=180.0), (28, 28), torch.Generator().manual_seed(4))
    # the corner pixel stays inside the image only within ~2 degrees of a quarter turn (~5% of
    # the angles); elsewhere it samples outside, which is black
    assert (view[:, 0, 0, 0] < 0.5).float().mean() > 0.8
    assert view[:, :, 12:16, 12:16].min() > 1.0 - 1e-5  # the centre always sees the image
    # rotate 0 (every preset's default) draws nothing, so existing views are unchanged
    batch = torch.randint(
        0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5)
    )
    plain = make_augment("grayscale", (0.5,), (0.25,))
    zero = make_augment("grayscale", (0.5,), (0.25,), rotate=0.0)
    assert all(
        torch.equal(u, v) for u, v in zip(plain(batch, seed=5), zero(batch, seed=5), strict=True)
    )
    turned = make_augment("grayscale", (0.5,), (0.25,), rotate=15.0)
    assert all(s.rotate == 15.0 for s in turned.specs)
    assert not torch.equal(plain(batch, seed=5)[0], turned(batch, seed=5)[0])


@pytest.mark.parametrize("bad", [-1.0, 181.0])
def test_rotate_out_of_range_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="rotate"):
        ViewSpec(rotate=bad)
    with pytest.raises(ValueError, match="rotate"):
        make_augment("grayscale", (0.5,), (0.25,), rotate=bad)
