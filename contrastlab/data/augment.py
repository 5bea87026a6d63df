"""Multi-view augmentation presets (SimCLR, MoCo v2, BYOL, grayscale) applied per batch.

A :class:`ViewSpec` lists one view's random transforms with the papers' parameters (it and
the named presets live in :mod:`contrastlab.data.view_specs`, re-exported here); a
:class:`MultiViewAugment` turns a uint8 batch (B, C, H, W) into V normalised float views,
each sample with its own random parameters, drawn from a CPU ``torch.Generator`` so that the
same seed gives the same views on any device.

Order of the ops, as in the reference code: random resized crop (with an optional shift and
rotation in the same resampling), horizontal flip, colour jitter (with probability),
grayscale, Gaussian blur, solarize, random erasing, normalise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

import torch

from contrastlab.data import augment_ops as ops
from contrastlab.data.view_specs import (
    DEFAULT_PRESET,
    DEFAULT_PRESET_ONE_DIRECTIONAL,
    DEFAULT_PRESET_SUPERVISED,
    PRESET_VIEW_SIZE,
    PRESETS,
    ViewSpec,
    simclr_spec,
)

__all__ = [
    "DEFAULT_PRESET",
    "DEFAULT_PRESET_ONE_DIRECTIONAL",
    "DEFAULT_PRESET_SUPERVISED",
    "PRESETS",
    "PRESET_VIEW_SIZE",
    "VIEW_OVERRIDES",
    "DatasetLike",
    "MultiViewAugment",
    "ViewSpec",
    "augment_for",
    "augment_view",
    "make_augment",
    "preset_for",
    "simclr_spec",
]


class DatasetLike(Protocol):
    """What :func:`augment_for` needs of a dataset (an ``ImageDataset`` qualifies)."""

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _kernel_size(side: int, frac: float) -> int:
    k = max(3, round(frac * side))
    return k if k % 2 else k + 1


def _apply_subset(
    images: torch.Tensor,
    p: float,
    generator: torch.Generator,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Replace, in place, a random subset (each sample with probability p) of ``images`` by
    ``fn(subset, cpu_index)``; returns ``images``."""
    if p <= 0.0:
        return images
    index = (torch.rand(images.shape[0], generator=generator) < p).nonzero().squeeze(1)
    if index.numel() == 0:
        return images
    device_index = index.to(images.device)
    images.index_copy_(0, device_index, fn(images.index_select(0, device_index), index))
    return images


def augment_view(
    images: torch.Tensor, spec: ViewSpec, size: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """One random view of a float batch (B, C, H, W) in [0, 1] -> (B, C, *size), in [0, 1].

    Random draws happen on the CPU in a fixed order, so a generator in a given state always
    produces the same view.
    """
    b, c, height, width = images.shape
    boxes = ops.sample_crop_boxes(b, height, width, spec.scale, spec.ratio, generator)
    if spec.translate > 0:  # drawn only when asked, so other specs keep their random stream
        limit = torch.tensor([height, width], dtype=boxes.dtype) * spec.translate
        shift = ((torch.rand(b, 2, generator=generator) * 2.0 - 1.0) * limit).round()
        boxes = torch.cat([boxes[:, :2] + shift, boxes[:, 2:]], dim=1)
    flip = torch.rand(b, generator=generator) < spec.flip_p
    angle = None
    if spec.rotate > 0:  # drawn only when asked, like the shift
        angle = (torch.rand(b, generator=generator) * 2.0 - 1.0) * spec.rotate
    out = ops.resized_crop(
        images,
        boxes,
        flip,
        size,
        padding="zeros" if spec.translate > 0 else "border",
        angle=angle,
    )  # a new tensor: the ops below may work in place

    strengths = (spec.brightness, spec.contrast, spec.saturation, spec.hue)
    if spec.jitter_p > 0 and any(strengths):
        apply = (torch.rand(b, generator=generator) < spec.jitter_p).unsqueeze(1)
        mult = torch.tensor(strengths[:3])
        lows = (1.0 - mult).clamp_min(0.0)
        mult = lows + torch.rand(b, 3, generator=generator) * (1.0 + mult - lows)
        shift = (torch.rand(b, 1, generator=generator) * 2.0 - 1.0) * spec.hue
        identity = torch.tensor([1.0, 1.0, 1.0, 0.0])
        factors = torch.where(apply, torch.cat([mult, shift], dim=1), identity)
        order = [i for i in torch.randperm(4, generator=generator).tolist() if strengths[i] > 0]
        # only the samples drawn for the jitter are computed (the rest would get (1, 1, 1, 0))
        index = apply.squeeze(1).nonzero().squeeze(1)
        if index.numel() == b:
            ops.color_jitter(out, factors, order, inplace=True)
        elif index.numel():
            device_index = index.to(out.device)
            part = ops.color_jitter(
                out.index_select(0, device_index), factors[index], order, inplace=True
            )
            out.index_copy_(0, device_index, part)
    if c == 3:
        out = _apply_subset(
            out, spec.gray_p, generator, lambda x, _: ops.grayscale(x).expand(-1, 3, -1, -1)
        )
    if spec.blur_p > 0:
        kernel = _kernel_size(min(size), spec.blur_kernel_frac)
        sigma = torch.empty(b).uniform_(*spec.blur_sigma, generator=generator)
        out = _apply_subset(
            out, spec.blur_p, generator, lambda x, idx: ops.gaussian_blur(x, sigma[idx], kernel)
        )
    if spec.solarize_p > 0:
        out = _grey_levels(out, spec, generator)
    return _apply_subset(out, spec.erase_p, generator, lambda x, _: _erase(x, spec, generator))


def _grey_levels(images: torch.Tensor, spec: ViewSpec, generator: torch.Generator) -> torch.Tensor:
    """Solarize a random subset (``spec.solarize_p``) of the views, at a threshold drawn per
    view when ``spec.solarize_threshold`` is a range; the share ``spec.solarize_curve`` of that
    subset gets a random grey-level curve (:func:`ops.grey_curve`) instead. Draws happen only for
    what the spec asks for, so a fixed threshold without curves keeps the random stream."""
    b = images.shape[0]
    lo, hi = spec.solarize_threshold
    threshold = torch.empty(b).uniform_(lo, hi, generator=generator) if lo < hi else None
    curved = knots = None
    if spec.solarize_curve > 0:
        curved = torch.rand(b, generator=generator) < spec.solarize_curve
        knots = torch.rand(b, spec.curve_knots, generator=generator)

    def remap(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if curved is None or knots is None:
            return ops.solarize(x, lo if threshold is None else threshold[idx])
        # each row is solarized or curved: compute only what each row gets (x is a copy)
        for rows, fn in (
            (~curved[idx], lambda v, i: ops.solarize(v, lo if threshold is None else threshold[i])),
            (curved[idx], lambda v, i: ops.grey_curve(v, knots[i])),
        ):
            pick = rows.nonzero().squeeze(1)
            if pick.numel():
                on = pick.to(x.device)
                x.index_copy_(0, on, fn(x.index_select(0, on), idx[pick]))
        return x

    return _apply_subset(images, spec.solarize_p, generator, remap)


def _erase(images: torch.Tensor, spec: ViewSpec, generator: torch.Generator) -> torch.Tensor:
    n, _, height, width = images.shape
    boxes = ops.sample_erase_boxes(n, height, width, spec.erase_scale, spec.erase_ratio, generator)
    if spec.erase_value is not None:
        return ops.erase(images, boxes, spec.erase_value)
    noise = torch.rand(images.shape, generator=generator)
    return ops.erase(images, boxes, noise)


class MultiViewAugment:
    """V random views of a uint8 batch, normalised with the dataset's mean and std.

    View v uses ``specs[v % len(specs)]`` (BYOL's asymmetric pair: view 0 blurred, view 1
    sometimes solarized). Every sample of every view gets its own random parameters.

    Example:
        >>> aug = MultiViewAugment(PRESETS["simclr-cifar"], mean, std, views=2)
        >>> v1, v2 = aug(images_uint8, seed=0)        # each (B, 3, 32, 32) float32
    """

    def __init__(
        self,
        specs: Sequence[ViewSpec],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        views: int = 2,
        size: int | tuple[int, int] | None = None,
        channels_last: bool = False,
    ) -> None:
        """
        Args:
            specs: one or more view specs, cycled over the views.
            mean, std: per-channel normalisation in [0, 1] units (C entries each).
            views: V, the number of views per image (>= 2 for contrastive learning; 1 is
                allowed for evaluation-style use).
            size: output (H', W') (an int means square); None keeps the input size.
            channels_last: return tensors in channels-last memory format.

        Raises:
            ValueError: on empty specs, views < 1, mismatched mean/std or std <= 0.
        """
        if not specs:
            raise ValueError("specs must hold at least one ViewSpec")
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need equal lengths and std > 0, got {mean}, {std}")
        self.specs = tuple(specs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.views = views
        self.size = (size, size) if isinstance(size, int) else size
        self.channels_last = channels_last

    def __repr__(self) -> str:
        return (
            f"MultiViewAugment(views={self.views}, size={self.size}, specs={self.specs}, "
            f"mean={self.mean}, std={self.std})"
        )

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> list[torch.Tensor]:
        """Augment a batch.

        Args:
            images: uint8 (B, C, H, W) on any device (C must match mean/std).
            generator: CPU generator for the random parameters (advanced by the call).
            seed: alternatively, a seed: the same seed gives identical views. With neither,
                a seed is drawn from torch's global RNG (so ``torch.manual_seed`` applies).

        Returns:
            V float32 tensors (B, C, H', W') on the images' device, normalised.

        Raises:
            ValueError: wrong dtype, rank or channel count, or both generator and seed given.
        """
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (B, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if images.shape[1] != len(self.mean):
            raise ValueError(
                f"images have {images.shape[1]} channels but mean/std have {len(self.mean)}"
            )
        if generator is not None and seed is not None:
            raise ValueError("pass generator or seed, not both")
        if generator is None:
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator().manual_seed(seed)
        size = self.size or (int(images.shape[2]), int(images.shape[3]))
        x = images.to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        inv_std = 1.0 / torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        out = []
        for v in range(self.views):
            view = augment_view(x, self.specs[v % len(self.specs)], size, generator)
            view = view.sub_(mean).mul_(inv_std)
            if self.channels_last:
                view = view.contiguous(memory_format=torch.channels_last)
            out.append(view)
        return out


#: the :class:`ViewSpec` fields :func:`make_augment` can set in every view of a preset.
VIEW_OVERRIDES = (
    "erase_p",
    "translate",
    "rotate",
    "solarize_p",
    "solarize_threshold",
    "solarize_curve",
)


def make_augment(
    preset: str,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    views: int = 2,
    size: int | tuple[int, int] | None = None,
    channels_last: bool = False,
    crop_min: float | None = None,
    **overrides: float | tuple[float, float] | None,
) -> MultiViewAugment:
    """A :class:`MultiViewAugment` from a named preset (see ``PRESETS``).

    ``size`` is the views' (H', W') (an int means square); None takes the preset's view size
    (``PRESET_VIEW_SIZE``: 20×20 for "grayscale"), or else the images' own size.

    ``crop_min`` replaces the lower bound of the preset's random-resized-crop area (e.g. 0.5
    for milder crops than the "grayscale" preset's 0.2). The ``overrides`` (keys of
    ``VIEW_OVERRIDES``: ``erase_p``, ``translate``, ``rotate``, ``solarize_p``,
    ``solarize_threshold``, ``solarize_curve``) replace that :class:`ViewSpec` field in every view; None keeps the preset's.

    Example:
        >>> make_augment("grayscale", (0.286,), (0.353,), solarize_threshold=(0.25, 0.75))

    Raises:
        ValueError: unknown preset (listing the known ones) or override key, ``crop_min``
            outside (0, 1], or an override outside its :class:`ViewSpec` range (naming it).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(VIEW_OVERRIDES))
    if unknown:
        raise ValueError(f"unknown view overrides {unknown}; known: {', '.join(VIEW_OVERRIDES)}")
    specs = PRESETS[preset]
    if crop_min is not None:
        if not 0.0 < crop_min <= 1.0:
            raise ValueError(f"crop_min must be in (0, 1], got {crop_min}")
        specs = tuple(replace(s, scale=(crop_min, max(crop_min, s.scale[1]))) for s in specs)
    changes = {name: value for name, value in overrides.items() if value is not None}
    if changes:  # ViewSpec checks the ranges
        specs = tuple(replace(s, **changes) for s in specs)  # type: ignore[arg-type]
    if size is None:
        size = PRESET_VIEW_SIZE.get(preset)
    return MultiViewAugment(specs, mean, std, views=views, size=size, channels_last=channels_last)


def preset_for(
    dataset: DatasetLike,
    preset: str | None = None,
    *,
    supervised: bool = False,
    one_directional: bool = False,
) -> str:
    """The preset name :func:`augment_for` uses: ``preset`` if given, else the dataset's default
    (``DEFAULT_PRESET``: "grayscale" for Fashion-MNIST, "simclr-cifar" for CIFAR, ...; with
    ``supervised``, ``DEFAULT_PRESET_SUPERVISED`` first, and with ``one_directional`` (a loss
    from view 0 to view 1 only), ``DEFAULT_PRESET_ONE_DIRECTIONAL`` first)."""
    return preset or (
        (DEFAULT_PRESET_SUPERVISED.get(dataset.name) if supervised else None)
        or (DEFAULT_PRESET_ONE_DIRECTIONAL.get(dataset.name) if one_directional else None)
        or DEFAULT_PRESET.get(dataset.name, "simclr-imagenet")
    )


def augment_for(
    dataset: DatasetLike,
    preset: str | None = None,
    *,
    views: int = 2,
    size: int | tuple[int, int] | None = None,
    channels_last: bool = False,
    crop_min: float | None = None,
    supervised: bool = False,
    one_directional: bool = False,
    **overrides: float | tuple[float, float] | None,
) -> MultiViewAugment:
    """The augmentation for a dataset: its mean/std and its preset (:func:`preset_for`);
    ``crop_min`` and the view ``overrides`` as in :func:`make_augment`, and ``size`` (None:
    the preset's view size, else the images')."""
    return make_augment(
        preset_for(dataset, preset, supervised=supervised, one_directional=one_directional),
        dataset.mean,
        dataset.std,
        views=views,
        size=size,
        channels_last=channels_last,
        crop_min=crop_min,
        **overrides,
    )
