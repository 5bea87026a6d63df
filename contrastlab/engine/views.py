"""A run's training views: the augmentation its config selects, and the view settings of a saved
run (which later changes of a preset's defaults must not alter)."""

from __future__ import annotations

import dataclasses
from typing import Any

from contrastlab.config import Config, ConfigError
from contrastlab.data import (
    PRESET_VIEW_SIZE,
    ImageDataset,
    MultiViewAugment,
    augment_for,
    preset_for,
)
from contrastlab.methods import Method

__all__ = [
    "PRECISE_BN_IMAGES",
    "augment_of",
    "preset_of",
    "with_named_views",
    "with_resolved_views",
    "with_stored_defaults",
    "with_stored_warmup",
]

#: images ``train.precise_bn`` None uses where the training views are resized.
PRECISE_BN_IMAGES = 10_000


def with_stored_defaults(
    cfg: Config, stored: dict[str, Any], dataset: ImageDataset, *, supervised: bool
) -> Config:
    """``cfg`` with the training views and ``train.precise_bn`` of a run whose config.json is
    ``stored``.

    Runs written before ``data.view_size``, ``data.solarize_p``, ``data.solarize_spread``,
    ``data.solarize_curve`` and ``train.precise_bn`` existed made their views at the images'
    own size and, with the "grayscale" preset, unsolarized, solarized at a fixed threshold of
    0.5, without random grey-level curves, and did not recompute BN statistics; a later default
    must not change them when such a run is resumed or re-evaluated. Runs store the preset they
    used in ``data.augment``; one without it used the dataset's default of its day, which did
    not depend on ``method.symmetric``. Values set in ``cfg`` win; otherwise the stored
    (resolved) ones apply, so later changes of a preset's defaults do not reach a run either.
    """
    data = stored.get("data") or {}
    precise_bn = cfg.train.precise_bn
    if precise_bn is None:
        precise_bn = (stored.get("train") or {}).get("precise_bn", 0)
    changes: dict[str, Any] = {}
    if cfg.data.augment is None:
        changes["augment"] = data.get("augment") or preset_for(dataset, supervised=supervised)
    if cfg.data.view_size is None:
        changes["view_size"] = data.get("view_size", int(dataset.images.shape[-1]))
    if cfg.data.solarize_p is None:
        if "solarize_p" in data:
            changes["solarize_p"] = data["solarize_p"]
        elif changes.get("augment", cfg.data.augment) == "grayscale":
            changes["solarize_p"] = 0.0
    if cfg.data.solarize_spread is None:
        changes["solarize_spread"] = data.get("solarize_spread", 0.0)
    if cfg.data.solarize_curve is None:
        changes["solarize_curve"] = data.get("solarize_curve", 0.0)
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, **changes),
        train=dataclasses.replace(cfg.train, precise_bn=precise_bn),
    )


def with_stored_warmup(cfg: Config, stored: dict[str, Any]) -> Config:
    """``cfg`` with the warmup of a run whose config.json is ``stored``, if it names one, so
    that a later change of a method's default warmup (BYOL's 0.5 became 2 epochs) does not
    alter the schedule of a run being resumed."""
    warmup = (stored.get("optim") or {}).get("warmup_epochs")
    if warmup is None:
        return cfg
    optim = dataclasses.replace(cfg.optim, warmup_epochs=float(warmup))
    return dataclasses.replace(cfg, optim=optim)


def preset_of(cfg: Config, dataset: ImageDataset, method: Method) -> str:
    """The augmentation preset of ``method``'s training views: ``cfg.data.augment``, or the
    dataset's default (its supervised one for methods that need labels, its one-directional one
    for a BYOL or MoCo whose loss runs from view 0 to view 1 only)."""
    return preset_for(
        dataset,
        cfg.data.augment,
        supervised=method.needs_labels,
        one_directional=not getattr(method, "symmetric", True),
    )


@dataclasses.dataclass
class _Named:
    """A dataset known by its name only (what :func:`preset_for` reads)."""

    name: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def with_named_views(cfg: Config) -> Config:
    """``cfg`` (its method defaults resolved, e.g. by ``with_method_defaults``) with
    ``data.augment`` None replaced by the preset a run would train with and ``data.view_size``
    None by that preset's view size where it has one, from the names of the dataset and the
    method alone (neither is loaded or built): what ``contrastlab config`` prints. The preset is
    :func:`preset_of`'s: the dataset's supervised default for SupCon and MoCo v2 with
    ``method.supervised_queue``, its one-directional default where ``method.symmetric`` is
    false. A ``view_size`` of None is left so where the views keep the images' own size."""
    name = cfg.method.name
    supervised = name == "supcon" or (name == "moco" and cfg.method.supervised_queue)
    preset = preset_for(
        _Named(cfg.data.dataset),
        cfg.data.augment,
        supervised=supervised,
        one_directional=cfg.method.symmetric is False,
    )
    view_size = cfg.data.view_size
    if view_size is None:
        view_size = PRESET_VIEW_SIZE.get(preset)
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, augment=preset, view_size=view_size)
    )


#: the ``cfg.data`` keys passed to the views under the same name (their range errors are
#: reported as config errors naming ``data.KEY``).
_DATA_KEYS = ("crop_min", "erase_p", "translate", "rotate", "solarize_p", "solarize_curve")


def augment_of(cfg: Config, dataset: ImageDataset, method: Method) -> MultiViewAugment:
    """The training views of ``cfg.data`` for ``dataset``: the preset of :func:`preset_of`, at
    ``cfg.data.view_size`` (None: the preset's view size, else the images' size)."""
    if cfg.data.view_size is not None and cfg.data.view_size < 1:
        raise ConfigError(
            f"data.view_size must be a positive side in pixels, got {cfg.data.view_size}"
        )
    spread = cfg.data.solarize_spread
    if spread is not None and not 0.0 <= spread <= 0.5:
        raise ConfigError(f"data.solarize_spread must be in [0, 0.5], got {spread}")
    try:
        return augment_for(
            dataset,
            preset_of(cfg, dataset, method),
            views=cfg.data.views,
            size=cfg.data.view_size,
            channels_last=cfg.train.channels_last,
            crop_min=cfg.data.crop_min,
            erase_p=cfg.data.erase_p,
            translate=cfg.data.translate,
            rotate=cfg.data.rotate,
            solarize_p=cfg.data.solarize_p,
            solarize_threshold=None if spread is None else (0.5 - spread, 0.5 + spread),
            solarize_curve=cfg.data.solarize_curve,
        )
    except ValueError as exc:  # ViewSpec / make_augment check the ranges and name the field
        field = str(exc).split(" ", 1)[0]
        if field in _DATA_KEYS:
            raise ConfigError(f"data.{exc}") from exc
        raise


def with_resolved_views(
    cfg: Config, augment: MultiViewAugment, dataset: ImageDataset, method: Method
) -> Config:
    """``cfg`` naming what its None view settings resolved to for ``augment``, the views of
    ``method``: the preset (:func:`preset_of`), the views' side, solarization (the preset's
    probability, threshold spread and share of random grey-level curves) and
    ``train.precise_bn`` (``PRECISE_BN_IMAGES`` where the views are resized to another side
    than the images', else 0), so that ``config.json`` records them and a later change of a
    preset's defaults cannot alter the run.

    Raises:
        ConfigError: if ``train.precise_bn`` is negative.
    """
    data: dict[str, Any] = {"augment": preset_of(cfg, dataset, method)}
    if cfg.data.view_size is None and augment.size is not None and len(set(augment.size)) == 1:
        data["view_size"] = augment.size[0]
    if cfg.data.solarize_p is None and len({s.solarize_p for s in augment.specs}) == 1:
        data["solarize_p"] = augment.specs[0].solarize_p
    thresholds = {s.solarize_threshold for s in augment.specs}
    if cfg.data.solarize_spread is None and len(thresholds) == 1:
        lo, hi = thresholds.pop()
        if abs(lo + hi - 1.0) < 1e-9:  # symmetric about 0.5, as data.solarize_spread makes them
            data["solarize_spread"] = (hi - lo) / 2
    if cfg.data.solarize_curve is None and len({s.solarize_curve for s in augment.specs}) == 1:
        data["solarize_curve"] = augment.specs[0].solarize_curve
    precise_bn = cfg.train.precise_bn
    if precise_bn is None:
        resized = augment.size is not None and augment.size != tuple(dataset.images.shape[-2:])
        precise_bn = PRECISE_BN_IMAGES if resized else 0
    elif precise_bn < 0:
        raise ConfigError(f"train.precise_bn must be >= 0 images, got {precise_bn}")
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, **data),
        train=dataclasses.replace(cfg.train, precise_bn=precise_bn),
    )
