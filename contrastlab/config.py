"""Typed run configuration. Unknown keys and wrong types are errors that name the key.

A config is a tree of dataclasses; it loads from a dict or a YAML file and takes dotted
overrides (``loss.temperature=0.2``). It imports nothing of the package.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_from_run",
    "config_to_dict",
    "load_config",
    "planned_epochs",
]


class ConfigError(ValueError):
    """A configuration key is unknown, has the wrong type or an invalid value."""


@dataclass
class DataConfig:
    """Dataset and views. ``augment`` names a preset of ``contrastlab.data`` (None = the
    dataset's default for the method, ``contrastlab.engine.views.preset_of``; a run's
    ``config.json`` stores the preset used); ``crop_min`` replaces the preset's smallest crop
    area (a fraction of the image in (0, 1]; None = the preset's); ``erase_p`` replaces the
    preset's Random Erasing probability (in [0, 1]; None = the preset's); ``translate`` replaces
    the preset's random shift of the crop, a fraction of the side in [0, 0.5] (black outside the
    image, as in the zero-padded random crop; None = the preset's); ``rotate`` replaces the
    preset's largest random rotation of a view about its crop's centre, in degrees in [0, 180]
    (black outside the image; None = the preset's, 0 in every preset); ``solarize_p`` replaces the
    preset's probability of solarizing a view (pixels >= 0.5 become 1 - x; in [0, 1]; None = the
    preset's); ``solarize_spread`` s draws each solarized view's threshold uniformly from [0.5 -
    s, 0.5 + s] (in [0, 0.5]; 0 is the fixed 0.5; None = the preset's); ``solarize_curve`` is
    the share of the views picked for solarizing that get a random non-monotone grey-level curve
    instead (piecewise linear, its values at 5 evenly spaced grey levels drawn from U(0, 1); in
    [0, 1]; None = the preset's); ``views`` is the number of views per image; ``view_size`` is
    the side in pixels of the training views, i.e. the random-resized-crop's output (None = the
    preset's, ``contrastlab.data.PRESET_VIEW_SIZE``: 20 for "grayscale", else the images' own
    size; a run's ``config.json`` stores the side used). Evaluation always reads the full-size
    images, so a smaller ``view_size`` trains on cheaper views and tests at a higher resolution
    (Touvron et al. 2019, "Fixing the train-test resolution discrepancy"). ``dataset`` names a
    dataset of ``contrastlab.data.load_dataset``; ``data_dir`` is the folder holding its
    official files (None = the cache, ``$CONTRASTLAB_DATA`` or else ``~/.cache/contrastlab``,
    then the Debian package for Fashion-MNIST); ``download`` fetches missing files;
    ``batch_size`` is the source images per step (each gives ``views`` views); ``train_subset``
    keeps a seeded random subset of this many training images, for training and as the
    evaluation's kNN bank and probe set (None = all)."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    augment: str | None = None
    crop_min: float | None = None
    erase_p: float | None = None
    translate: float | None = None
    rotate: float | None = None
    solarize_p: float | None = None
    solarize_spread: float | None = None
    solarize_curve: float | None = None
    views: int = 2
    view_size: int | None = None
    batch_size: int = 256
    train_subset: int | None = None


@dataclass
class ModelConfig:
    """Encoder and heads. ``backbone``: small_cnn, resnet18/34/50; ``width`` is the small CNN's
    first width (its four stages use w, 2w, 4w and ``feat_dim``); ``feat_dim`` is the small CNN's
    last width, which is its feature dimension; ``pools`` lists the small CNN's units (of 1, 2,
    3) that end with a 2×2 max-pool, comma-separated. None in these keys means the method's
    default (``contrastlab.methods.SMALL_CNN_DEFAULTS``): widths 48-96-192-1024 for every
    method, with pools "1,2" for SupCon and "1,3" for SimCLR, MoCo and BYOL; with ``width`` set
    and ``feat_dim`` None the widths are w-2w-4w-32w (see ``contrastlab.nn.small_cnn``).
    ``stem_width`` chooses the small CNN's stem: 0 is the space-to-depth stem (2×2 pixel
    patches), C > 0 a learned one at full resolution (3×3 convolution with C channels, 2×2
    max-pool, BN, ReLU); None is the method's default (16 for every method).
    ``mirror`` builds the small CNN from mirror-equivariant layers, so that an image and its
    mirror image get the same features (``contrastlab.nn.mirror``; even widths only).
    ``cifar_stem`` is the ResNets' 3×3 stem. The projection head (SimCLR, SupCon, MoCo; BYOL's
    projector) has ``proj_layers`` linear layers (the hidden ones ``proj_hidden_dim`` wide, each
    followed by BN and ReLU) and ends in ``proj_dim``; ``proj_last_bn`` adds an affine-free BN on
    its output (None: the method's default, on for BYOL's projector and off otherwise; see
    ``contrastlab.methods.PROJ_LAST_BN``), and ``proj_layers=3`` with ``proj_last_bn`` is SimCLR
    v2's head (Chen et al. 2020b). ``pred_hidden_dim`` is BYOL's predictor's hidden width."""

    backbone: str = "small_cnn"
    cifar_stem: bool = True
    width: int | None = None
    feat_dim: int | None = None
    pools: str | None = None
    stem_width: int | None = None
    mirror: bool = False
    proj_hidden_dim: int = 512
    proj_dim: int = 128
    proj_layers: int = 2
    proj_last_bn: bool | None = None
    pred_hidden_dim: int = 512


@dataclass
class LossConfig:
    """Loss and temperature policy.

    ``name``: nt_xent, hard_nt_xent, simple, hard_simple, align_uniform (SimCLR-style methods),
    supcon (SupCon), moco (MoCo), byol (BYOL), or "auto" (the method's own loss).
    ``policy``: fixed, cosine, learnable, dystress. ``temperature`` is τ for fixed, the initial
    τ for learnable; cosine and dystress use ``tau_min``/``tau_max``. ``cosine_period`` is the
    cosine schedule's T in optimiser steps (the trainer passes the global step); None = the
    run's length, so that τ falls from ``tau_max`` to ``tau_min`` over training (a run on a
    wall-clock budget without ``train.epochs`` must set it). ``shift``: DySTreSS's shifted
    variant (c in [0, 1); None = the plain one). ``top_k`` / ``alpha`` (hard_nt_xent,
    hard_simple; exactly one): keep the ``top_k`` most similar negatives, or the fraction
    ``alpha`` of them (Wang & Liu's upper-α quantile). ``lam`` (simple, hard_simple): the
    negatives' weight λ (None = 1 / the number of negatives, of those kept for hard_simple).
    ``variant`` (supcon): "out" (L_out) or "in" (L_in). ``temperature_lr``: the learning rate of
    a learnable τ (None = the main one)."""

    name: str = "auto"
    policy: str = "fixed"
    temperature: float | None = None
    tau_min: float | None = None
    tau_max: float | None = None
    cosine_period: float | None = None
    shift: float | None = None
    top_k: int | None = None
    alpha: float | None = None
    lam: float | None = None
    variant: str = "out"
    temperature_lr: float | None = None


@dataclass
class MethodConfig:
    """Method and its own state. ``name``: simclr, moco, supcon, byol. ``queue_size`` (MoCo): K
    keys in the queue, a multiple of the batch size. ``moco_momentum``: the key encoder's EMA
    momentum. ``byol_base_momentum``: τ_base of BYOL's target EMA, raised to 1 on a cosine
    schedule. ``supervised_queue`` (MoCo): the queue also holds the keys' labels and the loss
    treats same-class keys as positives (needs labels). ``symmetric`` (MoCo, BYOL): each of the
    two views serves as query / online input and the loss is summed over both directions;
    False: one direction only (view 0 → view 1, MoCo v2 as published), which costs half the
    compute per image, and whose default views give the target / key a calmer view 1
    (``contrastlab.data.DEFAULT_PRESET_ONE_DIRECTIONAL``); None: the method's default
    (``contrastlab.methods.SYMMETRIC``: one-directional for MoCo v2 and symmetric for BYOL, each
    as published); a run's ``config.json`` stores the value used. ``predictor_lr_scale``
    (BYOL): the predictor's learning rate as a multiple of the schedule's (SimSiam's faster
    predictor); 1 = the same as the rest. ``bn_groups`` (MoCo): shuffle BN on one device,
    BatchNorm statistics over ``batch_size / bn_groups`` images with the keys' groups drawn at
    random (He et al. 2020, §3.3); 1 = over the whole batch."""

    name: str = "simclr"
    queue_size: int = 4096
    moco_momentum: float = 0.99
    byol_base_momentum: float = 0.99
    supervised_queue: bool = False
    symmetric: bool | None = None
    predictor_lr_scale: float = 1.0
    bn_groups: int = 1


@dataclass
class OptimConfig:
    """Optimiser and schedule: linear warmup, then cosine decay to ``final_lr_frac`` × lr.
    ``name``: adamw, sgd or lars (SimCLR/BYOL style; biases and norms excluded from weight decay
    and the adaptation). ``lr``: None (default) = the method's
    (``contrastlab.methods.DEFAULT_LR``: 1.2e-2 for SupCon, else 4e-3, tuned for AdamW on
    Fashion-MNIST; set it for SGD or LARS); a run's ``config.json`` stores the value used.
    ``weight_decay`` (not on biases and norms); ``momentum`` and ``nesterov`` (SGD, LARS);
    ``warmup_epochs``: the linear warmup's length, in epochs' worth of optimiser steps
    (fractions allowed), also on a wall-clock budget; None (default) = the method's
    (``contrastlab.methods.DEFAULT_WARMUP``: 2 for BYOL, else 0.5)."""

    name: str = "adamw"
    lr: float | None = None
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    warmup_epochs: float | None = None
    final_lr_frac: float = 0.01


@dataclass
class TrainConfig:
    """The training loop. ``epochs``: how many epochs, which is also the learning-rate schedule's
    length; None (default) means 20 without ``max_time``, and with it as many as the budget
    allows (the schedule then follows the clock). ``max_time`` is a wall-clock budget in
    minutes: the run stops at the end of the step that crosses it, or after ``epochs`` if those
    are given and end first; the schedule follows whichever is further along.
    ``amp``: bf16 autocast; None (default) = only where the hardware runs bf16 natively (emulated
    bf16 on AVX2-only CPUs is several times slower than fp32). ``knn_monitor``: after every
    epoch, the weighted kNN top-1 of the backbone on fixed subsets (5,000 train images as the
    bank, 1,000 test queries; labelled data only), logged as ``knn_monitor_top1``.
    ``diagnostics_every`` (epochs; 0 = off) and ``diagnostics_samples``: the representation
    diagnostics on a fixed subset of the test split. ``precise_bn``: after the last step, the
    backbone's BatchNorm running statistics are recomputed over this many unaugmented training
    images at their own size (PreciseBN, Wu & Johnson 2021), so that they describe the images
    the encoder is evaluated on; 0 = off; None (default) = 10,000 when the training views are
    resized to another side than the images' (``data.view_size``), else 0. ``seed`` seeds the
    model, the views and the data order. ``device``: "auto" (CUDA if available, else CPU),
    "cpu", "cuda", "cuda:1", ... ``channels_last``: convolutions in the channels-last memory
    format. ``threads``: torch's CPU threads (None = torch's default). ``out``: the run
    directory (None = runs/METHOD-DATASET-TIME). ``checkpoint_every``: epochs between
    checkpoints, >= 1 (the last epoch and Ctrl-C always write one). ``deterministic``: torch's
    deterministic algorithms, for bitwise resume checks (slower; an op without a deterministic
    version only warns). ``quiet``: no progress bars and no per-epoch lines on the console."""

    epochs: int | None = None
    max_time: float | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool = True
    threads: int | None = None
    out: str | None = None
    checkpoint_every: int = 1
    deterministic: bool = False
    quiet: bool = False
    knn_monitor: bool = True
    diagnostics_every: int = 1
    diagnostics_samples: int = 2048
    precise_bn: int | None = None


@dataclass
class EvalConfig:
    """Evaluation: weighted kNN (Wu et al. 2018) and the linear probe on frozen features.
    ``knn_k`` neighbours with vote weights exp(s / ``knn_t``) on cosine similarity s. The probe:
    ``linear_epochs`` epochs of AdamW at ``linear_lr`` with ``linear_weight_decay``, minibatches
    of ``linear_batch_size``, cosine decay, on standardised features. ``untrained_baseline``: also
    evaluate the encoder as initialised. ``save_embeddings``: write ``.npy`` files in the run
    directory: the test set's projections of two views (``test_projections.npy``) and, for
    labelled data, its backbone features and labels (``test_features.npy``,
    ``test_labels.npy``)."""

    knn_k: int = 200
    knn_t: float = 0.1
    linear_epochs: int = 30
    linear_lr: float = 1e-2
    linear_weight_decay: float = 5e-6
    linear_batch_size: int = 1024
    untrained_baseline: bool = True
    save_embeddings: bool = True


@dataclass
class Config:
    """A whole run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, bool, str, X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # YAML reads "data.download=1" as an int
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # YAML reads "model.pools=2" as an int
    raise ConfigError(
        f"config key {key!r} expects {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    )


def _fill(obj: Any, data: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(
                f"unknown config key {full!r}; known keys here: {', '.join(sorted(names))}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key {full!r} is a section; expected a mapping, got {value!r}"
                )
            _fill(current, value, full + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from nested dicts; unknown keys or wrong types raise ConfigError."""
    cfg = Config()
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    _fill(cfg, data, "")
    return cfg


def config_from_run(data: dict[str, Any]) -> Config:
    """The config of a saved run (``config.json`` or a checkpoint's ``config``).

    Keys added after the run was written take the value that rebuilds that run rather than
    today's default: a run without ``model.pools`` used a small CNN pooled after units 1 and 3,
    one without ``model.stem_width`` the space-to-depth stem, and a null ``model.width`` / ``model.feat_dim`` meant width 32 and a last width of 32 × width.
    A run without ``model.proj_last_bn``, or with it null, had no BN on its head's output, and
    one without ``method.symmetric`` a symmetric loss. A null ``loss.temperature`` under the
    fixed or learnable policy was the method's τ of its day: 0.1 for SupCon, else 0.2.
    """
    cfg = config_from_dict(data)
    if cfg.loss.temperature is None and cfg.loss.policy in ("fixed", "learnable"):
        # runs store the resolved τ since MoCo's default became 0.1 (thirty-first round)
        cfg.loss.temperature = 0.1 if cfg.method.name == "supcon" else 0.2
    model = data.get("model") if isinstance(data, dict) else None
    if cfg.model.proj_last_bn is None:  # runs store the resolved value; before it: no output BN
        cfg.model.proj_last_bn = False
    if cfg.method.symmetric is None:  # likewise; before the method defaults: symmetric
        cfg.method.symmetric = True
    if isinstance(model, dict) and cfg.model.backbone == "small_cnn":
        if "pools" not in model:
            cfg.model.pools = "1,3"
        if "stem_width" not in model:  # before model.stem_width: the space-to-depth stem
            cfg.model.stem_width = 0
        # runs store the resolved width and feat_dim; None is a run from before the method
        # defaults, when the width was 32 and the last width 32 × width
        if cfg.model.width is None:
            cfg.model.width = 32
        if cfg.model.feat_dim is None:
            cfg.model.feat_dim = 32 * cfg.model.width
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (JSON/YAML/checkpoint friendly)."""
    return dataclasses.asdict(cfg)


#: how YAML spells null; a text key given one of these is None.
_NULLS = ("", "~", "null", "Null", "NULL")


def _is_text(tp: Any) -> bool:
    """Whether the annotation is ``str`` or ``str | None`` (a key that holds free text)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ()
    return tp is str or (str in args and all(a in (str, type(None)) for a in args))


def _parse_value(raw: str, tp: Any, path: str) -> Any:
    """An override's value: YAML for numbers, booleans and lists; for a text key the text as
    given (``--out 0755`` stays "0755", not the octal 493; ``a #1`` keeps its "#1"), unless quoted
    or a YAML null."""
    import yaml

    text = raw.strip()
    if _is_text(tp) and text not in _NULLS and text[:1] not in ("'", '"'):
        return text
    try:
        return yaml.safe_load(raw) if text else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {path}={raw!r}: not a valid value ({exc})") from exc


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings. Values are parsed as YAML scalars (numbers, booleans,
    null, lists), except that a text key takes its value as written."""
    data = config_to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        path, raw = item.split("=", 1)
        parts = path.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"override key {path!r} must be section.key, e.g. loss.temperature")
        section = data.get(parts[0])
        if not isinstance(section, dict):
            raise ConfigError(f"unknown config section {parts[0]!r}; known: {', '.join(data)}")
        if parts[1] not in section:
            raise ConfigError(
                f"unknown config key {path!r}; known keys here: {', '.join(sorted(section))}"
            )
        hints = typing.get_type_hints(type(getattr(cfg, parts[0])))
        section[parts[1]] = _parse_value(raw, hints[parts[1]], path.strip())
    return config_from_dict(data)


def load_config(path: str | Path) -> Config:
    """Read a YAML (or JSON) config file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        raise ConfigError(f"config file {str(p)!r} {what}")
    with p.open() as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from exc
    return config_from_dict(data)


#: epochs of a run that sets neither ``train.epochs`` nor ``train.max_time``.
DEFAULT_EPOCHS = 20


def planned_epochs(cfg: Config) -> int | None:
    """The run's epoch count: ``train.epochs``, else 20, or None (no epoch limit) when a
    wall-clock budget (``train.max_time``) is set."""
    if cfg.train.epochs is not None:
        return cfg.train.epochs
    return None if cfg.train.max_time is not None else DEFAULT_EPOCHS
