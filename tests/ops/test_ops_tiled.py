"""The tiled kernel equals the dense reference path: values and gradients, every softmax loss.

Tiles are forced small (3 × 4 on N = 7 samples) so every loss crosses several row and column
blocks, with N not a multiple of the tile, and both kernel modes run: recomputation
(``backend="tiled"``) and stored exponential tiles (``"auto"`` below the store budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from contrastlab.losses import registry
from contrastlab.losses.info_nce import hard_nt_xent, nt_xent
from contrastlab.losses.moco import moco_info_nce
from contrastlab.losses.supcon import supcon
from contrastlab.ops import contrastive_loss
from contrastlab.ops.tiled import choose_backend, tiled_options
from contrastlab.temperature import Cosine, DySTreSS, Fixed, Learnable, PosNeg, TemperaturePolicy

SOFTMAX_LOSSES = [
    "nt_xent",
    "multiview_nt_xent",
    "supcon",
    "supcon_in",
    "moco",
    "moco_supervised",
    "hard_nt_xent",
]

POLICIES: dict[str, Callable[[], TemperaturePolicy]] = {
    "fixed": lambda: Fixed(0.3),
    "fixed_small": lambda: Fixed(0.02),
    "learnable": lambda: Learnable(0.2),
    "dystress": lambda: DySTreSS(0.07, 0.2),
    "dystress_shift": lambda: DySTreSS(0.07, 0.2, shift=0.2),
    "cosine": lambda: Cosine(),
    "posneg": lambda: PosNeg(0.1, 0.3),
    "posneg_learnable": lambda: PosNeg(Learnable(0.15), 0.3),
}

# "auto_partial": only some tiles fit the store budget, the others are recomputed.
MODES = {
    "tiled": {},
    "auto_store": {"store_bytes": 1 << 30},
    "auto_partial": {"store_bytes": 3 * 4 * 8 * 3},
}


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def _run(
    fn: Callable[..., Tensor],
    inputs: dict[str, Any],
    grad_names: tuple[str, ...],
    temp: TemperaturePolicy,
    backend: str,
    options: dict[str, int],
) -> tuple[Tensor, list[Tensor]]:
    ex = {
        k: (v.clone().requires_grad_(k in grad_names) if isinstance(v, Tensor) else v)
        for k, v in inputs.items()
    }
    temp.zero_grad(set_to_none=True)
    with tiled_options(rows=3, cols=4, **options):
        out = fn(**ex, temperature=temp, backend=backend, reduction="none", step=40)
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype)
    (out * weights).sum().backward()
    grads = [ex[k].grad for k in grad_names]
    grads += [p.grad if p.grad is not None else torch.zeros(()) for p in temp.parameters()]
    return out.detach(), grads


def _compare(
    fn: Callable[..., Tensor],
    inputs: dict[str, Any],
    grad_names: tuple[str, ...],
    policy: str,
    mode: str,
    tol: float,
) -> None:
    ref, ref_g = _run(fn, inputs, grad_names, POLICIES[policy](), "dense", {})
    backend = "tiled" if mode == "tiled" else "auto"
    got, got_g = _run(fn, inputs, grad_names, POLICIES[policy](), backend, MODES[mode])
    assert torch.isfinite(got).all()
    assert _rel(got, ref) <= tol, f"loss rel err {_rel(got, ref):.2e}"
    for i, (g, r) in enumerate(zip(got_g, ref_g, strict=True)):
        assert g is not None and r is not None
        # τ parameters are float32 whatever the inputs' dtype: float32 tolerance for them.
        g_tol = tol if i < len(grad_names) else max(tol, 1e-6)
        assert _rel(g, r) <= g_tol, f"grad {i} rel err {_rel(g, r):.2e}"


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("name", SOFTMAX_LOSSES)
def test_registry_tiled_equals_dense(name: str, policy: str, dtype: torch.dtype, mode: str) -> None:
    spec = registry.LOSSES[name]
    inputs = spec.example(7, 5, dtype=dtype, generator=torch.Generator().manual_seed(3))
    tol = 1e-5 if dtype == torch.float32 else 1e-11
    _compare(spec.fn, inputs, spec.grad_inputs, policy, mode, tol)


def _randn(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=dtype)


def _asym_mask(n: int) -> Tensor:
    mask = torch.rand(n, n, generator=torch.Generator().manual_seed(5)) < 0.4
    mask[2] = False  # sample 2: no positive at all (not even its other views)
    return mask.float()


SPECIAL: dict[str, tuple[Callable[..., Tensor], dict[str, Any], tuple[str, ...]]] = {
    "supcon_mask_out": (
        supcon,
        {"features": _randn(7, 2, 5), "mask": _asym_mask(7)},
        ("features",),
    ),
    "supcon_mask_in": (
        supcon,
        {"features": _randn(7, 2, 5), "mask": _asym_mask(7), "variant": "in"},
        ("features",),
    ),
    "supcon_singleton_one_view": (
        supcon,
        {"features": _randn(7, 1, 5), "labels": torch.tensor([0, 0, 1, 2, 2, 2, 3])},
        ("features",),
    ),
    "supcon_contrast_one": (
        supcon,
        {
            "features": _randn(7, 3, 5),
            "labels": torch.tensor([0, 0, 1, 2, 2, 2, 3]),
            "contrast_mode": "one",
        },
        ("features",),
    ),
    "supcon_in_mask_one": (
        supcon,
        {
            "features": _randn(7, 2, 5),
            "mask": _asym_mask(7),
            "contrast_mode": "one",
            "variant": "in",
        },
        ("features",),
    ),
    "nt_xent_negatives": (
        nt_xent,
        {"z1": _randn(7, 5), "z2": _randn(7, 4, 5)[:, 0], "negatives": _randn(9, 5)},
        ("z1", "z2", "negatives"),
    ),
    "hard_negatives_small_k": (
        hard_nt_xent,
        {"z1": _randn(7, 5), "z2": _randn(7, 6, 5)[:, 0], "negatives": _randn(6, 5), "top_k": 3},
        ("z1", "z2", "negatives"),
    ),
    "moco_unknown_queue_labels": (
        moco_info_nce,
        {
            "q": _randn(7, 5),
            "k": _randn(7, 2, 5)[:, 0],
            "queue": _randn(11, 5),
            "labels": torch.tensor([0, 1, 2, 0, 1, 2, 5]),
            "queue_labels": torch.tensor([0, -1, 1, 2, -1, 0, 1, 2, 0, -1, 3]),
        },
        ("q", "k", "queue"),
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("policy", ["fixed", "learnable", "dystress", "posneg"])
@pytest.mark.parametrize("case", list(SPECIAL))
def test_special_cases_tiled_equals_dense(case: str, policy: str, mode: str) -> None:
    fn, inputs, grads = SPECIAL[case]
    _compare(fn, inputs, grads, policy, mode, 1e-5)


def test_rows_without_positive_are_zero_and_flagged() -> None:
    a = torch.nn.functional.normalize(_randn(5, 4), dim=1)
    ids = torch.tensor([0, 0, 1, 2, 2])
    with tiled_options(rows=2, cols=3):
        loss, has = contrastive_loss(
            a,
            a,
            lambda s, p: torch.tensor(0.5),
            anchor_ids=ids,
            contrast_ids=ids,
            self_index=torch.arange(5),
            backend="tiled",
        )
    assert has.tolist() == [True, True, False, True, True]
    assert float(loss[2]) == 0.0


def test_auto_choice_and_options() -> None:
    a = torch.zeros(100, 8)
    fixed = Fixed(0.5)

    def tau(s: Tensor, p: Tensor) -> Tensor:
        return fixed(s, positive=p)

    with tiled_options(store_bytes=100 * 100 * 4):
        assert choose_backend(a, 100, tau) == ("tiled", True)
    with tiled_options(store_bytes=0):
        assert choose_backend(a, 100, tau) == ("tiled", False)
    with tiled_options(dense_elems=100 * 100):
        assert choose_backend(a, 100, tau)[0] == "dense"
    with pytest.raises(ValueError, match="rows"), tiled_options(rows=0):
        pass


def test_large_temperature_range_stays_finite() -> None:
    z1, z2 = _randn(6, 5), _randn(6, 3, 5)[:, 0]
    for tau in (0.01, 10.0):
        with tiled_options(rows=4, cols=5):
            got = nt_xent(z1, z2, tau, backend="tiled")
        ref = nt_xent(z1, z2, tau, backend="dense")
        assert _rel(got, ref) <= 1e-5


def test_supcon_in_gradients_stay_finite_when_positives_trail_by_far() -> None:
    # At τ = 0.01 the positives of these random anchors trail the best negative by far more than
    # 88 nats: P·exp(lse − lse_pos) overflowed to inf·0 = NaN in the tiled backward.
    feats = torch.randn(32, 2, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(32)
    grads = {}
    for backend, opts in (("dense", {}), ("tiled", {"rows": 5, "cols": 7}), ("auto", {})):
        x = feats.clone().requires_grad_(True)
        with tiled_options(**opts):
            supcon(x, labels, temperature=0.01, variant="in", backend=backend).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), backend
        grads[backend] = x.grad
    assert _rel(grads["tiled"], grads["dense"]) <= 1e-4
    assert _rel(grads["auto"], grads["dense"]) <= 1e-4


def test_a_row_whose_first_tiles_are_masked_keeps_its_own_shift() -> None:
    # Sample 0's only positive has cosine −0.97 and sits in a later 1 × 1 tile than the masked
    # self column: a running maximum reset to 0 underflowed its logits (−inf / NaN at τ 0.008).
    th = math.acos(-0.97)
    f = torch.tensor([[[1.0, 0.0]], [[math.cos(th), math.sin(th)]], [[math.cos(th), -math.sin(th)]]])
    labels = torch.tensor([0, 0, 1])
    for tau in (0.01, 0.008, 0.005):
        for variant in ("out", "in"):
            ref = supcon(f, labels, temperature=tau, variant=variant, reduction="none",
                         backend="dense")
            with tiled_options(rows=1, cols=1, store_bytes=0):
                got = supcon(f, labels, temperature=tau, variant=variant, reduction="none",
                             backend="tiled")
            assert torch.isfinite(got).all() and _rel(got, ref) <= 1e-5, (tau, variant)


def test_contrastive_loss_names_bad_arguments() -> None:
    a = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    tau = Fixed(0.5)

    def fn(s: Tensor, p: Tensor) -> Tensor:
        return tau(s, positive=p)

    ids = torch.arange(4)
    with pytest.raises(ValueError, match="variant must be 'out' or 'in', got 'oops'"):
        contrastive_loss(a, a, fn, anchor_ids=ids, contrast_ids=ids, variant="oops")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        contrastive_loss(a, a, fn, anchor_ids=ids, contrast_ids=ids, top_k=0)
    with pytest.raises(ValueError, match=r"pos_mask must be bool of shape \(4, 4\)"):
        contrastive_loss(a, a, fn, pos_mask=torch.ones(4, 3, dtype=torch.bool))


def test_auto_keeps_no_tiles_when_no_backward_will_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import contrastlab.ops.tiled as tiled

    seen: list[bool] = []
    real = tiled.contrastive_loss_tiled

    def spy(*args: Any, store: bool = False, **kwargs: Any) -> Any:
        seen.append(store)
        return real(*args, store=store, **kwargs)

    monkeypatch.setattr(tiled, "contrastive_loss_tiled", spy)
    z1, z2 = _randn(6, 5), _randn(6, 3, 5)[:, 0]
    with torch.no_grad():
        nt_xent(z1, z2, 0.2)
    nt_xent(z1, z2, 0.2)  # no input needs a gradient either
    nt_xent(z1.requires_grad_(True), z2, 0.2)
    assert seen == [False, False, True]


def test_dense_path_keeps_float32_similarities_under_autocast() -> None:
    z1, z2 = _randn(64, 16), _randn(64, 3, 16)[:, 0]
    ref = nt_xent(z1, z2, 0.01, backend="dense")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = nt_xent(z1, z2, 0.01, backend="dense")
    assert _rel(got, ref) <= 1e-5  # a bf16 product was off by ~0.2 at this τ
