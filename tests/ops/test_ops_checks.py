"""``check_finite``: the fast sum path rejects exactly what the element-wise check rejects."""

from __future__ import annotations

import pytest
import torch

from contrastlab.ops import check_embeddings, check_finite


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_rejected(dtype: torch.dtype, bad: float) -> None:
    x = torch.randn(33, 5).to(dtype)
    x[17, 3] = bad
    with pytest.raises(ValueError, match="must be finite"):
        check_finite(x, "x")
    with pytest.raises(ValueError, match="x must be finite"):
        check_embeddings(x, "x")


def test_inf_and_minus_inf_together_rejected() -> None:
    x = torch.zeros(4, 3)
    x[0, 0], x[1, 1] = float("inf"), float("-inf")
    with pytest.raises(ValueError, match="1 Inf|2 Inf"):
        check_finite(x, "x")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_finite_values_whose_sum_overflows_pass(dtype: torch.dtype) -> None:
    big = torch.finfo(dtype).max
    x = torch.full((8, 4), big, dtype=dtype)
    assert not torch.isfinite(x.float().sum() if dtype == torch.bfloat16 else x.sum())
    check_finite(x, "x")
    check_finite(-x, "x")


def test_empty_and_grad_inputs() -> None:
    check_finite(torch.empty(0, 3), "x")
    x = torch.randn(5, 3, requires_grad=True)
    check_finite(x, "x")
    y = x.clone()
    with torch.no_grad():
        y[2, 1] = float("nan")
    with pytest.raises(ValueError, match="1 NaN and 0 Inf"):
        check_finite(y, "y")
