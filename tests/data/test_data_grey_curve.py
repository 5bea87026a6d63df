"""Random grey-level curves: the op against ``numpy.interp``, and ``ViewSpec.solarize_curve``
giving a share of the solarized views a random piecewise-linear curve instead."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from contrastlab.data import ViewSpec, augment_view, make_augment
from contrastlab.data import augment_ops as ops

PLAIN = ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)


def _batch(b: int, side: int = 28, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 1, side, side), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("knots", [2, 3, 5, 8])
def test_grey_curve_is_numpy_interp_per_sample(knots: int) -> None:
    """Each sample's pixels go through ``numpy.interp`` with its own knot values at the evenly
    spaced grey levels, exact grey levels 0 and 1 included."""
    g = torch.Generator().manual_seed(knots)
    images = torch.rand(6, 2, 5, 7, generator=g, dtype=torch.float64)
    images[:, 0, 0, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    values = torch.rand(6, knots, generator=g, dtype=torch.float64)
    out = ops.grey_curve(images, values)
    grid = np.linspace(0.0, 1.0, knots)
    for x, v, y in zip(images.numpy(), values.numpy(), out.numpy(), strict=True):
        np.testing.assert_allclose(y, np.interp(x, grid, v), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="values must be"):
        ops.grey_curve(images, values[:5])
    with pytest.raises(ValueError, match="values must be"):
        ops.grey_curve(images, values[:, :1])


def _curve_fit(before: np.ndarray, after: np.ndarray, knots: int) -> tuple[np.ndarray, float]:
    """The knot values of the piecewise-linear curve that best maps ``before`` to ``after``
    (least squares on the hat basis that ``numpy.interp`` spans) and the largest residual."""
    grid = np.linspace(0.0, 1.0, knots)
    basis = np.stack([np.interp(before, grid, np.eye(knots)[k]) for k in range(knots)], axis=1)
    values = np.linalg.lstsq(basis, after, rcond=None)[0]
    return values, float(np.abs(basis @ values - after).max())


def _is_solarized(before: np.ndarray, after: np.ndarray) -> bool:
    flipped = np.abs(after - (1.0 - before)) < 1e-6
    kept = np.abs(after - before) < 1e-6
    if not (flipped | kept).all():
        return False
    low = before[kept & ~flipped].max(initial=0.0)
    high = before[flipped & ~kept].min(initial=1.0)
    return bool(low < high)  # one threshold separates the kept pixels from the inverted ones


def test_solarize_curve_gives_a_share_of_the_solarized_views_a_random_curve() -> None:
    """With solarize p 1: ``solarize_curve`` 1 maps every view through its own 5-knot curve with
    values in [0, 1] (recovered by least squares, exact to float precision; a solarized view
    fits no such curve); at 0.5 each view is either solarized or curved, and both occur."""
    x = _batch(64)
    args = ("grayscale", (0.0,), (1.0,))  # mean 0, std 1: the views are the pixels themselves
    plain = make_augment(*args, solarize_p=0.0)(x, seed=3)[0].flatten(1).double().numpy()
    curved = make_augment(*args, solarize_p=1.0, solarize_curve=1.0)(x, seed=3)[0]
    fitted = []
    for before, after in zip(plain, curved.flatten(1).double().numpy(), strict=True):
        values, residual = _curve_fit(before, after, 5)
        assert residual < 1e-5
        assert values.min() > -1e-4 and values.max() < 1 + 1e-4
        fitted.append(values)
    assert np.ptp(np.stack(fitted), axis=0).min() > 0.5  # each knot's value varies by view

    half = make_augment(*args, solarize_p=1.0, solarize_curve=0.5)(x, seed=3)[0]
    kinds = []
    for before, after in zip(plain, half.flatten(1).double().numpy(), strict=True):
        solarized = _is_solarized(before, after)
        fits_curve = _curve_fit(before, after, 5)[1] < 1e-5
        assert solarized or fits_curve
        if solarized and fits_curve:  # a threshold above all its pixels: nothing inverted
            assert np.abs(after - before).max() < 1e-6
            continue
        kinds.append(fits_curve)
    assert len(kinds) >= 48 and 0.3 < np.mean(kinds) < 0.7  # about half of them curved


def test_solarize_curve_draws_only_when_used_and_checks_its_range() -> None:
    """Curves draw from the augmentation's generator only when solarizing with a share above 0
    (other specs keep their random stream); out-of-range values name the field."""
    x = _batch(32).float() / 255

    def state_after(**fields: float) -> torch.Tensor:
        gen = torch.Generator().manual_seed(5)
        augment_view(x, replace(PLAIN, **fields), (28, 28), gen)  # type: ignore[arg-type]
        return gen.get_state()

    assert torch.equal(state_after(solarize_p=0.5), state_after(solarize_p=0.5, solarize_curve=0.0))
    assert torch.equal(state_after(solarize_p=0.0), state_after(solarize_p=0.0, solarize_curve=0.5))
    assert not torch.equal(state_after(solarize_p=0.5), state_after(solarize_p=0.5, solarize_curve=0.5))
    for bad in ({"solarize_curve": 1.5}, {"solarize_curve": -0.1}):
        with pytest.raises(ValueError, match="solarize_curve"):
            replace(PLAIN, **bad)  # type: ignore[arg-type]
    for knots in (1, 2.5, True):
        with pytest.raises(ValueError, match="curve_knots"):
            replace(PLAIN, curve_knots=knots)  # type: ignore[arg-type]
    view = augment_view(x, replace(PLAIN, solarize_p=1.0, solarize_curve=1.0, curve_knots=2), (28, 28),
                        torch.Generator().manual_seed(0))
    for before, after in zip(x.flatten(1).double().numpy(), view.flatten(1).double().numpy(), strict=True):
        assert _curve_fit(before, after, 2)[1] < 1e-5  # two knots: a straight line a + b x
