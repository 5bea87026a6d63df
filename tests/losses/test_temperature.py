"""Temperature policies (SPEC §3, §4) against their formulas."""

from __future__ import annotations

import math

import oracles as O
import pytest
import torch

from contrastlab.losses import nt_xent, supcon
from contrastlab.temperature import Cosine, DySTreSS, Fixed, Learnable, PosNeg, TemperaturePolicy

F64 = torch.float64
GRID = torch.linspace(-1.0, 1.0, 41, dtype=F64)


def rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def full(pol, sim, **kw):
    """Policy output broadcast to the similarity tensor's shape, as float64."""
    return torch.broadcast_to(pol(sim, **kw), sim.shape).to(F64)


def all_policies():
    return [Fixed(0.3), Cosine(), Learnable(), DySTreSS(), DySTreSS(shift=0.2),
            PosNeg(positive=0.1, negative=0.5)]


@pytest.mark.parametrize("pol", all_policies(), ids=lambda p: type(p).__name__)
def test_policies_are_modules(pol):
    assert isinstance(pol, TemperaturePolicy)
    assert isinstance(pol, torch.nn.Module)


# ---------------------------------------------------------------------------- Fixed
def test_fixed():
    pol = Fixed(0.3)
    sim = rand(3, 5, seed=0).clamp(-1, 1)
    torch.testing.assert_close(full(pol, sim), torch.full((3, 5), 0.3, dtype=F64))
    torch.testing.assert_close(full(pol, sim, step=123), torch.full((3, 5), 0.3, dtype=F64))
    assert pol.value() == pytest.approx(0.3)
    assert pol.value(step=9) == pytest.approx(0.3)


# --------------------------------------------------------------------------- Cosine
@pytest.mark.parametrize("kw", [{}, {"tau_min": 0.05, "tau_max": 0.5, "period": 37}])
def test_cosine_formula_and_endpoints(kw):
    pol = Cosine(**kw)
    args = {"tau_min": 0.1, "tau_max": 1.0, "period": 200} | kw
    sim = torch.zeros(2, 3, dtype=F64)
    for step in sorted({0, 1, args["period"] // 3, args["period"] // 2, args["period"] - 1,
                        args["period"]}):
        expected = O.cosine_tau(step, **args)
        torch.testing.assert_close(full(pol, sim, step=step), torch.full((2, 3), expected,
                                                                           dtype=F64))
        assert pol.value(step=step) == pytest.approx(expected, rel=1e-12)
    assert pol.value(step=0) == pytest.approx(args["tau_max"])
    assert pol.value(step=args["period"]) == pytest.approx(args["tau_min"])
    assert pol.value(step=args["period"] / 2) == pytest.approx(
        (args["tau_min"] + args["tau_max"]) / 2)


def test_cosine_is_a_pure_function_of_step():
    pol, other = Cosine(), Cosine()
    sim = torch.zeros(4, dtype=F64)
    state = {k: v.clone() for k, v in pol.state_dict().items()}
    first = full(pol, sim, step=10).clone()
    for step in (100, 150, 3, 199, 10, 10):
        full(pol, sim, step=step)
        pol.value(step=step)
    torch.testing.assert_close(full(pol, sim, step=10), first)
    torch.testing.assert_close(full(other, sim, step=10), first)
    assert pol.value(step=10) == other.value(step=10)
    # nothing hidden: no parameters, and no state that changes with calls
    assert not list(pol.parameters())
    after = pol.state_dict()
    assert set(after) == set(state)
    assert all(torch.equal(after[k], state[k]) for k in state)


def test_cosine_requires_step():
    with pytest.raises(ValueError, match="step"):
        Cosine()(torch.zeros(3))


def test_cosine_through_loss_equals_float_temperature():
    z1, z2 = rand(4, 3, seed=1), rand(4, 3, seed=2)
    for step in (0, 50, 200):
        torch.testing.assert_close(
            nt_xent(z1, z2, Cosine(), step=step, reduction="none"),
            nt_xent(z1, z2, O.cosine_tau(step), reduction="none"), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ Learnable
def test_learnable_initialisation_and_value():
    pol = Learnable()
    assert isinstance(pol.log_scale, torch.nn.Parameter)
    assert any(p is pol.log_scale for p in pol.parameters())
    assert float(pol.log_scale.detach()) == pytest.approx(math.log(1 / 0.07))
    assert pol.value() == pytest.approx(0.07)
    sim = torch.zeros(3, 2, dtype=F64)
    torch.testing.assert_close(full(pol, sim).detach(), torch.full((3, 2), 0.07, dtype=F64))
    pol2 = Learnable(init=0.5, min=0.1)
    assert float(pol2.log_scale.detach()) == pytest.approx(math.log(2.0))
    assert pol2.value() == pytest.approx(0.5)


def test_learnable_gradient_reaches_log_scale_and_matches_oracle():
    z1, z2 = rand(4, 3, seed=3), rand(4, 3, seed=4)
    pol = Learnable(init=0.2)
    loss = nt_xent(z1, z2, pol)
    loss.backward()
    assert pol.log_scale.grad is not None
    ls = torch.tensor(math.log(1 / 0.2), dtype=F64, requires_grad=True)
    ref = O.nt_xent(z1, z2, O.learnable_tau(ls, 0.01))
    ref.backward()
    torch.testing.assert_close(loss.detach().to(F64), ref.detach(), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(pol.log_scale.grad.to(F64).reshape(()), ls.grad, rtol=1e-5,
                               atol=1e-8)
    # an optimiser step moves τ in the direction that lowers the loss
    opt = torch.optim.SGD(pol.parameters(), lr=0.05)
    opt.step()
    assert float(nt_xent(z1, z2, pol).detach()) < float(loss.detach())


@pytest.mark.parametrize("min_tau", [0.01, 0.05])
def test_learnable_clamped_at_min(min_tau):
    pol = Learnable(init=0.07, min=min_tau)
    with torch.no_grad():
        pol.log_scale.fill_(math.log(1000.0))  # τ would be 0.001 without the clamp
    assert pol.value() == pytest.approx(min_tau)
    sim = torch.zeros(2, 2, dtype=F64)
    torch.testing.assert_close(full(pol, sim).detach(), torch.full((2, 2), min_tau, dtype=F64))
    assert pol.value() == pytest.approx(O.learnable_tau(math.log(1000.0), min_tau))
    z1, z2 = rand(3, 4, seed=5), rand(3, 4, seed=6)
    torch.testing.assert_close(nt_xent(z1, z2, pol).detach(), nt_xent(z1, z2, min_tau),
                               rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------- DySTreSS
@pytest.mark.parametrize("args", [(0.07, 0.2), (0.1, 0.2), (0.05, 1.0)])
def test_dystress_formula_both_forms(args):
    tau_min, tau_max = args
    pol = DySTreSS(tau_min, tau_max)
    got = full(pol, GRID)
    sin_form = torch.tensor([O.dystress_tau(float(s), tau_min, tau_max) for s in GRID], dtype=F64)
    cos_form = torch.tensor([O.dystress_tau_cos_form(float(s), tau_min, tau_max) for s in GRID],
                            dtype=F64)
    torch.testing.assert_close(sin_form, cos_form, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got, sin_form, rtol=1e-9, atol=1e-12)
    # smallest at s = 0, largest at s = ±1
    assert float(full(pol, torch.tensor([0.0], dtype=F64))) == pytest.approx(tau_min)
    for s in (-1.0, 1.0):
        assert float(full(pol, torch.tensor([s], dtype=F64))) == pytest.approx(tau_max)


def test_dystress_defaults_and_arbitrary_shape():
    pol = DySTreSS()
    sim = rand(2, 3, 4, seed=7).clamp(-1, 1)
    got = full(pol, sim)
    assert got.shape == sim.shape
    expected = torch.tensor([O.dystress_tau(float(s)) for s in sim.flatten()], dtype=F64)
    torch.testing.assert_close(got.flatten(), expected, rtol=1e-9, atol=1e-12)
    # a positive mask is accepted and ignored
    mask = torch.zeros_like(sim, dtype=torch.bool)
    mask[0, 0, 0] = True
    torch.testing.assert_close(full(pol, sim, positive=mask), got)


def test_dystress_shifted_variant():
    tmin, tmax, c = 0.07, 0.2, 0.2
    pol = DySTreSS(tmin, tmax, shift=c)
    got = full(pol, GRID)
    expected = torch.tensor([O.dystress_tau(float(s), tmin, tmax, shift=c) for s in GRID],
                            dtype=F64)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)

    def at(s):
        return float(full(pol, torch.tensor([s], dtype=F64)))

    assert at(1.0) == pytest.approx(tmax)
    assert at(0.0) == pytest.approx(tmax)
    assert at(-0.19) == pytest.approx(tmax)
    assert at(-c) == pytest.approx(tmax)  # continuous at the shift
    assert at(-1.0) == pytest.approx(tmin)
    assert at(-0.6) == pytest.approx(tmin + 0.5 * (tmax - tmin))  # cos(−π/2) = 0
    assert at(-0.3) == pytest.approx(O.dystress_tau(-0.3, tmin, tmax, shift=c))
    assert tmin < at(-0.3) < tmax


@pytest.mark.parametrize("pol", [DySTreSS(), DySTreSS(shift=0.2)], ids=["plain", "shift"])
def test_dystress_tau_carries_no_gradient(pol):
    sim = (rand(5, 5, seed=8).clamp(-0.9, 0.9)).requires_grad_(True)
    tau = pol(sim)
    if tau.requires_grad:
        (g,) = torch.autograd.grad(tau.sum(), sim, allow_unused=True)
        assert g is None or torch.count_nonzero(g) == 0


def test_dystress_loss_gradient_equals_frozen_tau():
    """The loss gradient equals that of the same loss with τ_ij frozen as constants, and
    differs measurably from the gradient with τ differentiated (so the check has teeth)."""
    z1, z2 = rand(4, 3, seed=9), rand(4, 3, seed=10)
    a = z1.clone().requires_grad_(True)
    b = z2.clone().requires_grad_(True)
    nt_xent(a, b, DySTreSS(0.07, 0.2)).backward()
    frozen = [z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)]
    O.nt_xent(*frozen, lambda s, pos: O.dystress_tau(s, 0.07, 0.2)).backward()
    live = [z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)]
    O.nt_xent(*live, lambda s, pos: O.dystress_tau_torch(s, 0.07, 0.2), detach_tau=False).backward()
    torch.testing.assert_close(a.grad, frozen[0].grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(b.grad, frozen[1].grad, rtol=1e-8, atol=1e-10)
    assert (a.grad - live[0].grad).abs().max() > 1e-3


def test_dystress_applies_to_the_positive_too():
    """Every logit, positive included, uses τ(s_ij): compare against the oracle anchor by anchor."""
    z1, z2 = rand(3, 4, seed=11), rand(3, 4, seed=12)
    torch.testing.assert_close(
        nt_xent(z1, z2, DySTreSS(), reduction="none"),
        O.nt_xent(z1, z2, lambda s, p: O.dystress_tau(s), reduction="none"), rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------- PosNeg
def test_posneg_selects_by_mask():
    sim = rand(4, 6, seed=13).clamp(-1, 1)
    positive = torch.zeros(4, 6, dtype=torch.bool)
    positive[torch.arange(4), torch.arange(4) + 1] = True
    got = full(PosNeg(positive=0.1, negative=0.5), sim, positive=positive)
    torch.testing.assert_close(got, torch.where(positive, 0.1, 0.5).to(F64))
    pol = PosNeg(positive=DySTreSS(0.07, 0.2), negative=Fixed(0.4))
    got = full(pol, sim, positive=positive)
    dys = torch.tensor([O.dystress_tau(float(s)) for s in sim.flatten()], dtype=F64).reshape(4, 6)
    torch.testing.assert_close(got, torch.where(positive, dys, torch.tensor(0.4, dtype=F64)),
                               rtol=1e-9, atol=1e-12)


def test_posneg_requires_positive_mask():
    with pytest.raises(ValueError, match="positive"):
        PosNeg(positive=0.1, negative=0.5)(torch.zeros(3, 3))


def test_posneg_passes_step_through():
    z1, z2 = rand(4, 3, seed=14), rand(4, 3, seed=15)
    pol = PosNeg(positive=Cosine(tau_min=0.1, tau_max=1.0, period=100), negative=0.5)
    for step in (0, 30, 100):
        torch.testing.assert_close(
            nt_xent(z1, z2, pol, step=step, reduction="none"),
            O.nt_xent(z1, z2, O.posneg_tau(O.cosine_tau(step, 0.1, 1.0, 100), 0.5),
                      reduction="none"), rtol=1e-9, atol=1e-10)


def test_posneg_marks_label_positives_in_supcon():
    feats = rand(4, 2, 3, seed=16)
    labels = torch.tensor([0, 0, 1, 1])
    torch.testing.assert_close(
        supcon(feats, labels, temperature=PosNeg(positive=0.2, negative=0.6), reduction="none"),
        O.supcon(feats, labels, tau=O.posneg_tau(0.2, 0.6), reduction="none"),
        rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------- errors
BAD = {
    "Fixed(0)": (lambda: Fixed(0.0), r"tau|temperature"),
    "Fixed(-0.1)": (lambda: Fixed(-0.1), r"tau|temperature"),
    "Cosine tau_min 0": (lambda: Cosine(tau_min=0.0), r"tau_min"),
    "Cosine min > max": (lambda: Cosine(tau_min=1.0, tau_max=0.5), r"tau_min|tau_max"),
    "Cosine period 0": (lambda: Cosine(period=0), r"period"),
    "Learnable init 0": (lambda: Learnable(init=0.0), r"init"),
    "Learnable min 0": (lambda: Learnable(min=0.0), r"min"),
    "DySTreSS tau_min 0": (lambda: DySTreSS(tau_min=0.0), r"tau_min"),
    "DySTreSS min > max": (lambda: DySTreSS(tau_min=0.3, tau_max=0.2), r"tau_min|tau_max"),
    "DySTreSS shift text": (lambda: DySTreSS(shift="a"), r"shift must be a number"),
    "DySTreSS shift 1": (lambda: DySTreSS(shift=1.0), r"shift must be a number in \[0, 1\)"),
    "PosNeg positive 0": (lambda: PosNeg(positive=0.0, negative=0.5), r"positive|tau"),
    "PosNeg negative -1": (lambda: PosNeg(positive=0.1, negative=-1.0), r"negative|tau"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_policy_arguments(case):
    fn, name = BAD[case]
    with pytest.raises(ValueError, match=name):
        fn()


def test_learnable_tau_at_its_floor_can_rise_again() -> None:
    # An optimiser step past the floor (Adam/momentum overshoot) must not freeze τ there.
    pol = Learnable(init=0.05, min=0.01)
    with torch.no_grad():
        pol.log_scale.fill_(math.log(100.0) + 3.0)  # τ would be 0.0005 without the floor
    opt = torch.optim.SGD(pol.parameters(), lr=0.5)
    sim = torch.zeros(())
    assert float(pol(sim).detach()) == pytest.approx(0.01)
    assert "tau=0.01," in repr(pol)
    for _ in range(5):  # a loss that wants a larger τ
        opt.zero_grad()
        (-pol(sim)).backward()
        assert pol.log_scale.grad is not None and float(pol.log_scale.grad) != 0.0
        opt.step()
    assert pol.value() > 0.0101
