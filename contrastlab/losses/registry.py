"""One table of every loss: what it needs and example inputs, so tests and tools iterate over it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from contrastlab.losses.info_nce import hard_nt_xent, multiview_nt_xent, nt_xent
from contrastlab.losses.moco import moco_info_nce
from contrastlab.losses.regression import align_uniform_loss, byol_loss
from contrastlab.losses.simple import hard_simple_loss, simple_loss
from contrastlab.losses.supcon import supcon

__all__ = ["LOSSES", "LossSpec", "get_loss"]

Example = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class LossSpec:
    """What a loss is and needs.

    Attributes:
        name: registry key.
        fn: the stateless loss function.
        uses_temperature: takes ``temperature=`` (a float or policy) and ``step=``.
        needs_labels: needs class labels (supervised).
        uses_queue: takes a queue / bank of negatives.
        example: ``example(n, d, *, dtype=torch.float32, generator=None) -> dict`` of valid keyword
            inputs (no temperature).
        grad_inputs: the example's inputs that receive a gradient.
        paper: the reference.
    """

    name: str
    fn: Callable[..., Tensor]
    uses_temperature: bool
    needs_labels: bool
    uses_queue: bool
    example: Example
    grad_inputs: tuple[str, ...]
    paper: str
    default_temperature: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _randn(gen: torch.Generator | None, dtype: torch.dtype, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)


def _pair(
    n: int, d: int, *, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
) -> dict[str, Any]:
    return {"z1": _randn(generator, dtype, n, d), "z2": _randn(generator, dtype, n, d)}


def _hard_pair(
    n: int, d: int, *, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
) -> dict[str, Any]:
    return {**_pair(n, d, dtype=dtype, generator=generator), "top_k": max(1, n - 1)}


def _views(
    n: int, d: int, *, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
) -> dict[str, Any]:
    return {"views": _randn(generator, dtype, n, 3, d)}


def _labelled(
    n: int, d: int, *, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
) -> dict[str, Any]:
    labels = torch.arange(n) % max(2, n // 2)
    return {"features": _randn(generator, dtype, n, 2, d), "labels": labels}


def _moco(
    n: int, d: int, *, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
) -> dict[str, Any]:
    k = 2 * n
    return {
        "q": _randn(generator, dtype, n, d),
        "k": _randn(generator, dtype, n, d),
        "queue": _randn(generator, dtype, k, d),
    }


def _moco_sup(
    n: int, d: int, *, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
) -> dict[str, Any]:
    ex = _moco(n, d, dtype=dtype, generator=generator)
    ex["labels"] = torch.arange(n) % 3
    ex["queue_labels"] = torch.arange(2 * n) % 3
    return ex


def _byol(
    n: int, d: int, *, dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None
) -> dict[str, Any]:
    return {"p": _randn(generator, dtype, n, d), "z": _randn(generator, dtype, n, d)}


_SPECS = [
    LossSpec(
        "nt_xent", nt_xent, True, False, False, _pair, ("z1", "z2"), "SimCLR, Chen et al. 2020", 0.5
    ),
    LossSpec(
        "multiview_nt_xent",
        multiview_nt_xent,
        True,
        False,
        False,
        _views,
        ("views",),
        "SimCLR / SupCon with sample ids",
        0.5,
    ),
    LossSpec(
        "supcon",
        supcon,
        True,
        True,
        False,
        _labelled,
        ("features",),
        "SupCon L_out, Khosla et al. 2020",
        0.1,
    ),
    LossSpec(
        "supcon_in",
        functools.partial(supcon, variant="in"),
        True,
        True,
        False,
        _labelled,
        ("features",),
        "SupCon L_in, Khosla et al. 2020",
        0.1,
        {"variant": "in"},
    ),
    LossSpec(
        "moco",
        moco_info_nce,
        True,
        False,
        True,
        _moco,
        ("q", "k", "queue"),
        "MoCo, He et al. 2020",
        0.2,
    ),
    LossSpec(
        "moco_supervised",
        moco_info_nce,
        True,
        True,
        True,
        _moco_sup,
        ("q", "k", "queue"),
        "MoCo with a label-aware queue (SupCon L_out over queue positives)",
        0.1,
    ),
    LossSpec(
        "simple",
        simple_loss,
        False,
        False,
        False,
        _pair,
        ("z1", "z2"),
        "Wang & Liu 2021, simple loss",
    ),
    LossSpec(
        "hard_simple",
        hard_simple_loss,
        False,
        False,
        False,
        _hard_pair,
        ("z1", "z2"),
        "Wang & Liu 2021, HardSimple",
    ),
    LossSpec(
        "hard_nt_xent",
        hard_nt_xent,
        True,
        False,
        False,
        _hard_pair,
        ("z1", "z2"),
        "Wang & Liu 2021, hard contrastive loss",
        0.5,
    ),
    LossSpec("byol", byol_loss, False, False, False, _byol, ("p",), "BYOL, Grill et al. 2020"),
    LossSpec(
        "align_uniform",
        align_uniform_loss,
        False,
        False,
        False,
        _pair,
        ("z1", "z2"),
        "Wang & Isola 2020",
    ),
]

#: name → :class:`LossSpec` for every loss in the library.
LOSSES: dict[str, LossSpec] = {spec.name: spec for spec in _SPECS}


def get_loss(name: str) -> LossSpec:
    """Look a loss up by name; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}"
        ) from None
