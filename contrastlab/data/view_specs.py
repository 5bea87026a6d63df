"""View specifications: the random transforms of one view (:class:`ViewSpec`) and the named
presets of the papers (SimCLR, MoCo v2, BYOL) and of 28×28 grey-level data, with each
dataset's default preset. :mod:`contrastlab.data.augment` applies them."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "DEFAULT_PRESET",
    "DEFAULT_PRESET_ONE_DIRECTIONAL",
    "DEFAULT_PRESET_SUPERVISED",
    "PRESETS",
    "PRESET_VIEW_SIZE",
    "ViewSpec",
    "simclr_spec",
]


@dataclass(frozen=True)
class ViewSpec:
    """The random transforms of one view; probabilities are per sample.

    Attributes:
        scale: crop area as a fraction of the image, sampled uniformly.
        ratio: crop aspect ratio range, sampled log-uniformly.
        flip_p: probability of a horizontal flip.
        brightness, contrast, saturation: jitter strength j: factor uniform in
            [max(0, 1 - j), 1 + j]; saturation is ignored for 1-channel images.
        hue: shift uniform in [-hue, hue] turns (<= 0.5); ignored for 1-channel images.
        jitter_p: probability of applying the colour jitter (in a random order of the 4 ops,
            one order per batch and view).
        gray_p: probability of converting to grayscale (RGB only).
        blur_p: probability of a Gaussian blur with sigma uniform in ``blur_sigma`` and a
            kernel ``blur_kernel_frac`` of the side (rounded to odd, at least 3).
        solarize_p: probability of solarizing: pixels at or above a threshold t become 1 - x.
        solarize_threshold: t per sample, uniform in [lo, hi] (a fixed 0.5 by default).
        solarize_curve: the share of the solarized views that instead map their grey levels
            through a random piecewise-linear curve: its values at ``curve_knots`` evenly
            spaced grey levels (0, ..., 1) are drawn per view from U(0, 1) (0 = none; a view
            is solarized or curved, never both).
        curve_knots: the number of knots (>= 2) of that curve.
        erase_p: probability of Random Erasing (Zhong et al. 2020), the last op: a rectangle
            of ``erase_scale`` of the image's area and aspect in ``erase_ratio`` (log-uniform)
            is replaced by ``erase_value``, or by uniform noise in [0, 1] when None (the
            paper's best variant).
        translate: shift of the crop box, per axis and sample uniform in
            [-translate, translate] times the image's side, rounded to whole pixels (0 = none).
            Outside the image the shifted box sees black, as in the zero-padded random crop
            of supervised CIFAR and Fashion-MNIST training.
        rotate: largest rotation in degrees (in [0, 180]): each view's content is turned
            about its crop's centre by an angle uniform in [-rotate, rotate], in the same
            resampling as the crop; the turned box sees black outside the image (0 = none).
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    solarize_p: float = 0.0
    solarize_threshold: tuple[float, float] = (0.5, 0.5)
    solarize_curve: float = 0.0
    curve_knots: int = 5
    erase_p: float = 0.0
    erase_scale: tuple[float, float] = (0.02, 0.33)
    erase_ratio: tuple[float, float] = (0.3, 3.3)
    erase_value: float | None = None
    translate: float = 0.0
    rotate: float = 0.0

    def __post_init__(self) -> None:
        pairs = ("scale", "ratio", "blur_sigma", "solarize_threshold", "erase_scale", "erase_ratio")
        for name in pairs:
            value = getattr(self, name)
            if not (isinstance(value, (tuple, list)) and len(value) == 2):
                raise ValueError(f"{name} must be a pair (lo, hi), got {value!r}")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        if not 0.0 < self.erase_scale[0] <= self.erase_scale[1] <= 1.0:
            raise ValueError(f"erase_scale must satisfy 0 < lo <= hi <= 1, got {self.erase_scale}")
        if not 0.0 < self.erase_ratio[0] <= self.erase_ratio[1]:
            raise ValueError(f"erase_ratio must satisfy 0 < lo <= hi, got {self.erase_ratio}")
        probabilities = ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p", "solarize_curve")
        for name in (*probabilities, "erase_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        lo, hi = self.solarize_threshold
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(
                f"solarize_threshold must satisfy 0 <= lo <= hi <= 1, got {self.solarize_threshold}"
            )
        if isinstance(self.curve_knots, bool) or not isinstance(self.curve_knots, int):
            raise ValueError(f"curve_knots must be an int >= 2, got {self.curve_knots!r}")
        if self.curve_knots < 2:
            raise ValueError(f"curve_knots must be >= 2, got {self.curve_knots}")
        if not 0.0 <= self.translate <= 0.5:
            raise ValueError(f"translate must be in [0, 0.5], got {self.translate}")
        if not 0.0 <= self.rotate <= 180.0:
            raise ValueError(f"rotate must be in [0, 180] degrees, got {self.rotate}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if min(self.brightness, self.contrast, self.saturation) < 0:
            raise ValueError("brightness, contrast and saturation must be >= 0")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")
        if not 0.0 < self.blur_kernel_frac <= 1.0:
            raise ValueError(f"blur_kernel_frac must be in (0, 1], got {self.blur_kernel_frac}")
        if self.erase_value is not None and not 0.0 <= self.erase_value <= 1.0:
            raise ValueError(f"erase_value must be in [0, 1] or None, got {self.erase_value}")


def simclr_spec(strength: float, blur: bool) -> ViewSpec:
    """SimCLR's view (Chen et al. 2020, SPEC §1): jitter 0.8s/0.8s/0.8s/0.2s with p 0.8,
    grayscale 0.2, crop 0.08-1, flip 0.5, blur p 0.5 (ImageNet sizes only)."""
    return ViewSpec(
        brightness=0.8 * strength,
        contrast=0.8 * strength,
        saturation=0.8 * strength,
        hue=0.2 * strength,
        blur_p=0.5 if blur else 0.0,
    )


_BYOL = ViewSpec(saturation=0.2, blur_p=1.0)
_GRAYSCALE = ViewSpec(
    scale=(0.2, 1.0),
    saturation=0.0,
    hue=0.0,
    gray_p=0.0,
    solarize_p=0.5,
    solarize_threshold=(0.25, 0.75),
    solarize_curve=0.5,
)

PRESETS: dict[str, tuple[ViewSpec, ...]] = {
    # SimCLR on CIFAR: s = 0.5, no blur (the images are 32 x 32).
    "simclr-cifar": (simclr_spec(0.5, blur=False),),
    # SimCLR on ImageNet-like sizes: s = 1, blur p 0.5, sigma 0.1-2, kernel 10% of the side.
    "simclr-imagenet": (simclr_spec(1.0, blur=True),),
    # MoCo v2 (SPEC §6): crop 0.2-1, jitter 0.4/0.4/0.4/0.1 p 0.8, grayscale 0.2, blur p 0.5.
    "mocov2": (ViewSpec(scale=(0.2, 1.0), blur_p=0.5),),
    # BYOL (SPEC §7): jitter 0.4/0.4/0.2/0.1 p 0.8, grayscale 0.2; asymmetric blur 1.0 / 0.1
    # and solarize 0 / 0.2.
    "byol": (_BYOL, replace(_BYOL, blur_p=0.1, solarize_p=0.2)),
    # Fashion-MNIST, 28 x 28 x 1: crop 0.2-1 (at 0.08 a crop is ~8 x 8 pixels, too little of
    # a garment to keep its class; 0.2 is MoCo v2's bound), flip 0.5 (garments are mirror
    # symmetric), brightness/contrast 0.4 with p 0.8; half of the views remap their grey
    # levels: half of those are solarized at a threshold drawn per view from U(0.25, 0.75),
    # the other half go through a random 5-knot curve; no hue, saturation or grayscale (one
    # channel) and no blur (it erases most detail at this size). Grey-level maps are the
    # one-channel stand-in for SimCLR's colour distortion: two crops of a garment share its
    # grey-level histogram, and reordering the grey levels of some views stops the encoder
    # matching views by it. Ten-minute SimCLR runs (3 seeds each, benchmarks/training) gained
    # 1.0 kNN point from solarizing p 0.2 at 0.5 (85.5 against 84.5 %), 0.5 more from the random
    # threshold at p 0.5 (85.8; linear 91.1 against 90.6) and 0.6 more from the random curves
    # (86.4, above 86 on every seed; linear 90.8, -0.3).
    "grayscale": (_GRAYSCALE,),
    # "grayscale" with a lower-variance second view: view 0 is the "grayscale" view, view 1 the
    # same crop, flip and brightness/contrast without grey-level maps. Wang et al. 2022 ("On the
    # Importance of Asymmetry for Siamese Representation Learning") found that a target branch
    # with less variance than the source helps Siamese methods; with BYOL's or MoCo's
    # one-directional loss (``method.symmetric=false``) view 0 is the online / query input and
    # view 1 the target / key. ``data.solarize_*`` overrides apply to both views.
    "grayscale-asym": (_GRAYSCALE, replace(_GRAYSCALE, solarize_p=0.0)),
    # "grayscale-asym" whose second view is calmer still: its crop covers 0.4-1 of the image
    # instead of 0.2-1, so the target / key of a one-directional loss never sees the smallest
    # crops either (``data.crop_min`` sets both views' bound, which removes this difference).
    # Ten-minute one-directional BYOL runs (five seeds) gave +0.09 / +0.22 linear / kNN over
    # "grayscale-asym" (89.53 / 84.17 %), MoCo v2 (three seeds) -0.29 / -0.19: not a default.
    "grayscale-asym-crop": (
        _GRAYSCALE,
        replace(_GRAYSCALE, solarize_p=0.0, scale=(0.4, 1.0)),
    ),
    # "grayscale-asym" with more variance on the source side instead: view 0 remaps the grey
    # levels of 0.8 of the views (0.5 in "grayscale"), view 1 of none. One-directional BYOL
    # lost 0.49 / 0.09 linear / kNN against "grayscale-asym" (two seeds): not a default.
    "grayscale-asym-strong": (
        replace(_GRAYSCALE, solarize_p=0.8),
        replace(_GRAYSCALE, solarize_p=0.0),
    ),
    # Fashion-MNIST with labels (SupCon): "grayscale" without the crop (the whole image, then
    # flip and brightness/contrast). Same-class positives already bring the invariance that
    # crops teach, and cropping only cost accuracy: 4-epoch SupCon runs (seed 0) gave
    # 88.38 / 86.24 % linear / kNN with crops of 0.2-1 of the image, 89.28 / 87.05 at 0.5-1,
    # 89.78 / 88.79 at 0.8-1 and 90.24 / 89.41 without cropping.
    "grayscale-supervised": (
        ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), saturation=0.0, hue=0.0, gray_p=0.0),
    ),
    # MNIST digits: as "grayscale" without the flip (a mirrored digit is not that digit).
    "grayscale-digits": (
        ViewSpec(scale=(0.2, 1.0), flip_p=0.0, saturation=0.0, hue=0.0, gray_p=0.0),
    ),
}

#: the side of the training views a preset makes when the caller passes no ``size`` (other
#: presets keep the images' own size). "grayscale" resizes its crops (0.2-1 of a 28×28 garment)
#: to 20×20: the encoder is then evaluated on full 28×28 images, at a higher resolution than it
#: was trained on, which is where random-resized-crop training does best (Touvron et al. 2019,
#: "Fixing the train-test resolution discrepancy"). Four-epoch SimCLR runs on Fashion-MNIST
#: (seed 0) gave 89.30 / 81.70 % linear / kNN at 20×20 against 89.06 / 82.05 at 28×28, for a
#: step 1.4× as fast (paired); at equal compute (six epochs) 89.31 / 82.71.
PRESET_VIEW_SIZE: dict[str, int] = {
    "grayscale": 20,
    "grayscale-asym": 20,
    "grayscale-asym-crop": 20,
    "grayscale-asym-strong": 20,
}

# The default preset of a dataset for methods that use labels, where it differs from
# ``DEFAULT_PRESET``.
DEFAULT_PRESET_SUPERVISED = {"fashion-mnist": "grayscale-supervised"}

# The default preset of a dataset for a one-directional loss (BYOL's or MoCo's
# ``method.symmetric=false``: view 0 is the online / query input, view 1 the target / key),
# where it differs from ``DEFAULT_PRESET``: a target view with less variance than the source.
# Paired ten-minute runs gave one-directional BYOL +0.52 / +0.59 linear / kNN (four seeds) and
# MoCo v2 +0.23 / +0.50 (two seeds) over the "grayscale" views.
DEFAULT_PRESET_ONE_DIRECTIONAL = {"fashion-mnist": "grayscale-asym"}

DEFAULT_PRESET = {
    "fashion-mnist": "grayscale",
    "mnist": "grayscale-digits",
    "cifar10": "simclr-cifar",
    "cifar100": "simclr-cifar",
    "svhn": "simclr-cifar",
    "stl10": "simclr-imagenet",
    "image-folder": "simclr-imagenet",
}
