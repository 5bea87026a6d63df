"""The table of methods, and building one (with its encoder, heads and τ) from a config."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from contrastlab.config import Config, ConfigError, planned_epochs
from contrastlab.methods.base import Method
from contrastlab.methods.byol import BYOL
from contrastlab.methods.moco import MoCo
from contrastlab.methods.simclr import PAIR_LOSSES, SimCLR
from contrastlab.methods.supcon import SupCon
from contrastlab.nn import ProjectionHead, build_backbone
from contrastlab.temperature import POLICIES, Cosine, DySTreSS, Fixed, Learnable, TemperaturePolicy

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_WARMUP",
    "GENERAL_LR",
    "GENERAL_WARMUP",
    "METHODS",
    "METHOD_LOSSES",
    "PROJ_LAST_BN",
    "SMALL_CNN_DEFAULTS",
    "SYMMETRIC",
    "build_method",
    "build_temperature",
    "default_lr",
    "default_warmup",
    "infer_feat_dim",
    "with_method_defaults",
    "with_model_defaults",
]

#: name → method class, one readable file each.
METHODS: dict[str, type[Method]] = {"simclr": SimCLR, "moco": MoCo, "supcon": SupCon, "byol": BYOL}

#: the small CNN's settings per method where they differ from the general defaults (``model``
#: keys; otherwise pools "1,3", width 32, a last width of 32 × width and the space-to-depth
#: stem, which no built-in method now uses). With labels (SupCon):
#:
#: * pooling after units 1 and 2 (unit 3 then runs on the 3×3 map) lost nothing per epoch and
#:   runs 1.5× as many epochs: four-epoch SupCon runs (seed 0) gave 90.47 / 90.07 % linear / kNN
#:   against 90.40 / 90.09 with "1,3", and at equal compute (six epochs) 90.81 / 90.63. For
#:   SimCLR it cost 0.8 linear-probe points at equal compute (88.25 / 82.34 against 89.06 / 82.05);
#: * widths 48-96-192-1024 instead of 32-64-128-1024 (a 1.6× step) gave 91.46 / 90.83 in four
#:   epochs, against 90.81 / 90.63 (six epochs) and 91.53 / 91.27 (eight) at width 32;
#: * a learned 16-channel stem at full resolution (``stem_width``) instead of space-to-depth:
#:   ten-minute runs (2 threads, seeds 0 and 1) gave 92.72 / 93.26 and 92.63 / 92.85 against
#:   91.99 / 92.35 (three seeds) before, at the same speed. SimCLR, on 20×20 crops, gained nothing
#:   from it then (90.32 / 84.97 against 90.41 / 85.38, one seed at half the compute).
#:
#: Without labels the same units and stem (pools "1,3") run the step at 0.6× the images/s and
#: still win in ten minutes (2-core Zen-4, bf16; benchmarks/training/README.md, thirtieth
#: round): SimCLR 91.46 / 86.75 over five seeds against 90.89 / 86.74 at 32-64-128-1024 with the
#: space-to-depth stem, MoCo v2 91.21 / 86.08 against 90.60 / 85.99 (three seeds), BYOL 90.66 /
#: 85.05 (three seeds) against 90.12 / 85.00 (two).
SMALL_CNN_DEFAULTS: dict[str, dict[str, str | int]] = {
    "supcon": {"pools": "1,2", "width": 48, "feat_dim": 1024, "stem_width": 16},
    "simclr": {"pools": "1,3", "width": 48, "feat_dim": 1024, "stem_width": 16},
    "moco": {"pools": "1,3", "width": 48, "feat_dim": 1024, "stem_width": 16},
    "byol": {"pools": "1,3", "width": 48, "feat_dim": 1024, "stem_width": 16},
}

#: ``model.proj_last_bn`` per method when the config leaves it None: an affine-free BN on the
#: projection head's output (BYOL's projector). Ten-minute BYOL runs on Fashion-MNIST (2 threads,
#: fp32, seeds 0-4) gave 89.12 ± 0.20 / 83.25 ± 0.32 % linear / kNN with it against 88.90 ±
#: 0.44 / 82.61 ± 0.27 without: kNN higher on all five seeds (+0.65 paired), the probe +0.22.
#: SimCLR's head gained nothing from it over three seeds (90.90 / 86.60 against 90.86 / 86.59).
PROJ_LAST_BN: dict[str, bool] = {"byol": True}

#: ``method.symmetric`` per method when the config leaves it None (else True): MoCo v2's loss
#: runs one way, as published (view 0 the query, view 1 the key), and then takes the calmer key
#: view of ``contrastlab.data.DEFAULT_PRESET_ONE_DIRECTIONAL``. Ten-minute runs on Fashion-MNIST
#: (2 threads, fp32) gave 90.28 ± 0.18 / 85.25 ± 0.19 % linear / kNN over seeds 0-2, against
#: 90.03 ± 0.23 / 84.95 ± 0.22 for the symmetric loss on the same seeds (an earlier day; 90.18 /
#: 84.88 rerun on seed 1 beside it) and 89.96 / 84.69 for the one-directional loss with the
#: usual views (seeds 0-1). BYOL keeps its symmetrised loss, as published (SPEC §7).
SYMMETRIC: dict[str, bool] = {"moco": False}

#: AdamW's learning rate per method where it differs from ``GENERAL_LR`` (``optim.lr`` None).
#: SupCon: four-epoch runs on Fashion-MNIST (seed 0, bf16) gave 90.95 / 90.52 % linear / kNN
#: at 4e-3, and 91.57 / 90.94, 91.45 / 91.09 and 91.62 / 91.24 at 8e-3, 1.2e-2 and 1.6e-2: a
#: flat optimum, whose middle is the default.
DEFAULT_LR: dict[str, float] = {"supcon": 1.2e-2}
GENERAL_LR = 4e-3

#: Linear warmup, in epochs, per method where it differs from ``GENERAL_WARMUP``
#: (``optim.warmup_epochs`` None). BYOL: with half an epoch its first epoch collapses the
#: backbone (effective rank 198 after it, against 337 with two epochs); ten-minute runs on
#: Fashion-MNIST, seeds 0-2, each beside a control at 0.5, gave +0.29 to +0.44 linear and +0.25
#: to +0.49 kNN (thirty-second and thirty-third rounds). MoCo v2 gained nothing from it.
DEFAULT_WARMUP: dict[str, float] = {"byol": 2.0}
GENERAL_WARMUP = 0.5

#: τ used when the config leaves it out (Fashion-MNIST-scale defaults; SPEC.md §1, §5, §6;
#: BYOL's serves its diagnostics only). MoCo v2's 0.2 (the paper's) became 0.1 in the
#: thirty-first round: ten-minute runs, seeds 0-2, gave 91.34 / 86.64 % linear / kNN against
#: 91.21 / 86.08 (kNN +0.48 to +0.68 on every seed). Runs saved with a null τ used 0.2.
DEFAULT_TEMPERATURE: dict[str, float] = {"simclr": 0.2, "moco": 0.1, "supcon": 0.1, "byol": 0.2}

#: the loss each method trains with; SimCLR also accepts any pair loss.
METHOD_LOSSES: dict[str, tuple[str, ...]] = {
    "simclr": tuple(PAIR_LOSSES),
    "moco": ("moco",),
    "supcon": ("supcon",),
    "byol": ("byol",),
}


def build_temperature(cfg: Config, steps_per_epoch: int | None = None) -> TemperaturePolicy:
    """The temperature policy that ``cfg.loss`` describes (``policy`` and its τ values).

    The cosine schedule's period is ``loss.cosine_period`` (optimiser steps), else the run's
    length: its epochs × ``steps_per_epoch`` (the trainer's unit, the global step), or its
    epochs alone when ``steps_per_epoch`` is None (a caller that counts epochs).

    Raises:
        ConfigError: an unknown policy, or a cosine policy without a period on a run whose
            length is a wall-clock budget.
    """
    lc = cfg.loss
    tau = (
        lc.temperature
        if lc.temperature is not None
        else DEFAULT_TEMPERATURE.get(cfg.method.name, 0.2)
    )
    if lc.policy not in POLICIES:
        raise ConfigError(f"loss.policy must be one of {', '.join(POLICIES)}, got {lc.policy!r}")
    if lc.policy == "fixed":
        return Fixed(tau)
    if lc.policy == "learnable":
        return Learnable(init=tau, min=lc.tau_min if lc.tau_min is not None else 0.01)
    if lc.policy == "cosine":
        period = lc.cosine_period
        if period is None:
            epochs = planned_epochs(cfg)
            if epochs is None:
                raise ConfigError(
                    "loss.policy=cosine on a wall-clock budget needs loss.cosine_period "
                    "(optimiser steps) or train.epochs"
                )
            period = float(epochs * (steps_per_epoch or 1))
        return Cosine(
            lc.tau_min if lc.tau_min is not None else 0.1,
            lc.tau_max if lc.tau_max is not None else 1.0,
            period,
        )
    return DySTreSS(
        lc.tau_min if lc.tau_min is not None else 0.07,
        lc.tau_max if lc.tau_max is not None else 0.2,
        shift=lc.shift,
    )


def _loss_name(cfg: Config) -> str:
    method = cfg.method.name
    name = cfg.loss.name
    allowed = METHOD_LOSSES[method]
    if name == "auto":
        return allowed[0]
    if name not in allowed:
        raise ConfigError(
            f"loss.name={name!r} does not fit method.name={method!r}; allowed: {', '.join(allowed)}"
        )
    return name


def _pool_units(spec: str) -> tuple[bool, bool, bool]:
    """``model.pools`` ("1,3", "1,2", "1,2,3" …) → which of the small CNN's units 1-3 pool."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if any(item not in ("1", "2", "3") for item in items) or len(set(items)) != len(items):
        raise ConfigError(
            f"model.pools must list distinct units among 1, 2, 3 (e.g. '1,3'), got {spec!r}"
        )
    return ("1" in items, "2" in items, "3" in items)


def with_model_defaults(cfg: Config) -> Config:
    """A copy of ``cfg`` whose small-CNN keys left at None (``model.pools``, ``width``,
    ``feat_dim``, ``stem_width``) hold what the method builds (``SMALL_CNN_DEFAULTS``), so that ``config.json``
    and checkpoints name the architecture actually built and stay valid if the defaults change.
    A ``width`` set by the user takes the plain widths w-2w-4w-32w (unless ``feat_dim`` is set
    too); only a None ``width`` takes the method's four widths. Other backbones are returned
    unchanged, but for ``model.proj_last_bn``: None becomes the method's (``PROJ_LAST_BN``).
    ``method.symmetric`` None becomes the method's too (``SYMMETRIC``)."""
    if cfg.method.symmetric is None:
        symmetric = SYMMETRIC.get(cfg.method.name, True)
        cfg = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, symmetric=symmetric))
    mc = cfg.model
    if mc.proj_last_bn is None:
        mc = dataclasses.replace(mc, proj_last_bn=PROJ_LAST_BN.get(cfg.method.name, False))
        cfg = dataclasses.replace(cfg, model=mc)
    if mc.backbone != "small_cnn":
        return cfg
    method_defaults = SMALL_CNN_DEFAULTS.get(cfg.method.name, {})
    pools = mc.pools if mc.pools is not None else str(method_defaults.get("pools", "1,3"))
    stem_width = (
        mc.stem_width if mc.stem_width is not None else int(method_defaults.get("stem_width", 0))
    )
    if mc.width is None:  # the method's widths, all four
        width = int(method_defaults.get("width", 32))
        last = int(method_defaults.get("feat_dim", 32 * width))
    else:  # a width of the user's: w, 2w, 4w, 32w
        width, last = mc.width, 32 * mc.width
    feat_dim = mc.feat_dim if mc.feat_dim is not None else last
    model = dataclasses.replace(
        mc, pools=pools, width=width, feat_dim=feat_dim, stem_width=stem_width
    )
    return dataclasses.replace(cfg, model=model)


def default_lr(method: str) -> float:
    """The learning rate a method trains with when ``optim.lr`` is None (``DEFAULT_LR``)."""
    return DEFAULT_LR.get(method, GENERAL_LR)


def default_warmup(method: str) -> float:
    """The warmup, in epochs, a method trains with when ``optim.warmup_epochs`` is None."""
    return DEFAULT_WARMUP.get(method, GENERAL_WARMUP)


def with_method_defaults(cfg: Config) -> Config:
    """:func:`with_model_defaults`, and ``optim.lr`` / ``optim.warmup_epochs`` None replaced by
    the method's (:func:`default_lr`, :func:`default_warmup`), so that ``config.json`` names the
    values actually used; so too ``loss.temperature`` None (``DEFAULT_TEMPERATURE``) for the
    policies that read it (fixed, and learnable's initial τ).

    Raises:
        ConfigError: a negative ``optim.warmup_epochs``.
    """
    cfg = with_model_defaults(cfg)
    name = cfg.method.name
    lr = default_lr(name) if cfg.optim.lr is None else cfg.optim.lr
    warmup = default_warmup(name) if cfg.optim.warmup_epochs is None else cfg.optim.warmup_epochs
    if not warmup >= 0:
        raise ConfigError(f"optim.warmup_epochs must be >= 0 (epochs), got {warmup}")
    cfg = dataclasses.replace(
        cfg, optim=dataclasses.replace(cfg.optim, lr=lr, warmup_epochs=warmup)
    )
    if cfg.loss.temperature is None and cfg.loss.policy in ("fixed", "learnable"):
        tau = DEFAULT_TEMPERATURE.get(cfg.method.name, 0.2)
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, temperature=tau))
    return cfg


@torch.no_grad()
def infer_feat_dim(backbone: nn.Module, sample_shape: tuple[int, ...]) -> int:
    """The feature dimension F of ``backbone``: its ``feat_dim`` attribute if it has one, else
    the width of its output on two zero images of ``sample_shape`` = (C, H, W).

    Raises:
        ValueError: if the backbone does not map (2, C, H, W) to a (2, F) tensor.
    """
    declared = getattr(backbone, "feat_dim", None)
    if isinstance(declared, int):
        return declared
    param = next(backbone.parameters(), None)
    x = torch.zeros(2, *sample_shape, device=param.device if param is not None else "cpu")
    was_training = backbone.training
    backbone.eval()
    try:
        out = backbone(x)
    finally:
        backbone.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"backbone must map images (B, {', '.join(map(str, sample_shape))}) to features "
            f"(B, F); got {got}"
        )
    return int(out.shape[1])


def _check_moco(cfg: Config) -> None:
    """MoCo's queue and momentum, checked before anything is built, naming the config keys."""
    k, b = cfg.method.queue_size, cfg.data.batch_size
    if k < 1 or k % b != 0:
        raise ConfigError(
            f"method.queue_size ({k}) must be a positive multiple of data.batch_size ({b})"
        )
    if not 0.0 <= cfg.method.moco_momentum < 1.0:
        raise ConfigError(f"method.moco_momentum must be in [0, 1), got {cfg.method.moco_momentum}")


def build_method(
    cfg: Config,
    in_channels: int,
    *,
    backbone: nn.Module | None = None,
    image_shape: tuple[int, int] = (28, 28),
    steps_per_epoch: int | None = None,
) -> Method:
    """Build the method named by ``cfg.method.name`` with its encoder, heads and temperature.

    Args:
        cfg: the run's configuration.
        in_channels: image channels C.
        backbone: your own encoder, any ``nn.Module`` mapping (B, C, H, W) images to (B, F)
            features; ``cfg.model.backbone`` is then ignored. F is read from a ``feat_dim``
            attribute or measured with one forward of two zero images of ``image_shape``.
        image_shape: (H, W), only used to measure F of a user backbone.
        steps_per_epoch: optimiser steps per epoch, the unit of a cosine τ schedule's default
            period (see :func:`build_temperature`).

    Raises:
        ConfigError: unknown method/backbone/policy, or a loss that does not fit the method.
        ValueError: a user backbone whose output is not (B, F).
    """
    name = cfg.method.name
    if name not in METHODS:
        raise ConfigError(f"method.name must be one of {', '.join(METHODS)}, got {name!r}")
    loss_name = _loss_name(cfg)
    if cfg.method.symmetric is False and name not in ("moco", "byol"):
        raise ConfigError(f"method.symmetric=false applies to moco and byol, not {name!r}")
    if cfg.method.predictor_lr_scale != 1.0 and name != "byol":
        raise ConfigError(f"method.predictor_lr_scale applies to byol, not {name!r}")
    if cfg.method.bn_groups != 1 and name != "moco":
        raise ConfigError(f"method.bn_groups applies to moco, not {name!r}")
    if cfg.method.bn_groups < 1:
        raise ConfigError(f"method.bn_groups must be >= 1, got {cfg.method.bn_groups}")
    if cfg.method.bn_groups > 1 and cfg.model.mirror:
        raise ConfigError("method.bn_groups > 1 needs plain BatchNorm layers, not model.mirror's")
    if cfg.data.batch_size % cfg.method.bn_groups != 0 or (
        cfg.data.batch_size // cfg.method.bn_groups < 2
    ):
        raise ConfigError(
            f"data.batch_size ({cfg.data.batch_size}) must be a multiple of method.bn_groups "
            f"({cfg.method.bn_groups}) with at least 2 images per group"
        )
    if name in ("moco", "byol") and cfg.data.views != 2:
        raise ConfigError(f"{name} uses 2 views: data.views must be 2, got {cfg.data.views}")
    if name == "moco":
        _check_moco(cfg)
    if name == "byol" and not 0.0 <= cfg.method.byol_base_momentum <= 1.0:
        raise ConfigError(
            f"method.byol_base_momentum must be in [0, 1], got {cfg.method.byol_base_momentum}"
        )
    if not cfg.method.predictor_lr_scale > 0:
        raise ConfigError(
            f"method.predictor_lr_scale must be > 0, got {cfg.method.predictor_lr_scale}"
        )
    cfg = with_model_defaults(cfg)
    mc = cfg.model
    if backbone is not None:
        feat_dim = infer_feat_dim(backbone, (in_channels, *image_shape))
    else:
        try:
            kw: dict[str, object] = {}
            if mc.backbone == "small_cnn":
                assert mc.width is not None and mc.pools is not None
                w = mc.width
                kw["widths"] = (w, 2 * w, 4 * w, mc.feat_dim)
                kw["pools"] = _pool_units(mc.pools)
                kw["stem_width"] = mc.stem_width
                kw["mirror"] = mc.mirror
            elif mc.feat_dim is not None:
                raise ValueError(f"feat_dim is a small_cnn option; {mc.backbone} sets its own")
            elif mc.pools is not None:
                raise ValueError(f"pools is a small_cnn option; {mc.backbone} sets its own")
            elif mc.stem_width is not None:
                raise ValueError(
                    f"stem_width is a small_cnn option; {mc.backbone} has cifar_stem instead"
                )
            elif mc.mirror:
                raise ValueError(f"mirror is a small_cnn option, not one of {mc.backbone}")
            backbone = build_backbone(
                mc.backbone, in_channels=in_channels, cifar_stem=mc.cifar_stem, **kw
            )
        except ValueError as exc:
            raise ConfigError(f"model.backbone: {exc}") from exc
        feat_dim = int(getattr(backbone, "feat_dim"))  # noqa: B009 - set by every backbone

    for key in ("proj_hidden_dim", "proj_dim", "proj_layers", "pred_hidden_dim"):
        if getattr(mc, key) < 1:
            raise ConfigError(f"model.{key} must be >= 1, got {getattr(mc, key)}")

    def head() -> ProjectionHead:
        return ProjectionHead(
            feat_dim,
            mc.proj_hidden_dim,
            mc.proj_dim,
            num_layers=mc.proj_layers,
            last_bn=bool(mc.proj_last_bn),
        )

    tau = build_temperature(cfg, steps_per_epoch)
    lc = cfg.loss
    if name == "simclr":
        options: dict[str, object] = {}
        if loss_name in ("hard_nt_xent", "hard_simple"):
            if lc.top_k is None and lc.alpha is None:
                raise ConfigError(f"loss {loss_name!r} needs loss.top_k or loss.alpha")
            options = {"top_k": lc.top_k, "alpha": lc.alpha}
        if loss_name in ("simple", "hard_simple"):
            options["lam"] = lc.lam
        return SimCLR(backbone, feat_dim, head(), tau, loss_name, options, lc.temperature_lr)
    if name == "supcon":
        if lc.variant not in ("out", "in"):
            raise ConfigError(f"loss.variant must be 'out' or 'in', got {lc.variant!r}")
        return SupCon(
            backbone,
            feat_dim,
            head(),
            tau,
            "out" if lc.variant == "out" else "in",
            lc.temperature_lr,
        )
    if name == "moco":
        return MoCo(
            backbone,
            feat_dim,
            head(),
            tau,
            queue_size=cfg.method.queue_size,
            momentum=cfg.method.moco_momentum,
            supervised=cfg.method.supervised_queue,
            symmetric=bool(cfg.method.symmetric),
            temperature_lr=lc.temperature_lr,
            proj_dim=mc.proj_dim,
            bn_groups=cfg.method.bn_groups,
        )
    projector = head()
    predictor = ProjectionHead(mc.proj_dim, mc.pred_hidden_dim, mc.proj_dim)
    return BYOL(
        backbone,
        feat_dim,
        projector,
        predictor,
        base_momentum=cfg.method.byol_base_momentum,
        symmetric=bool(cfg.method.symmetric),
        predictor_lr_scale=cfg.method.predictor_lr_scale,
    )
