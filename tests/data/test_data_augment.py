"""Batched multi-view augmentation: shapes, ranges, per-sample randomness, reproducibility."""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import replace

import pytest
import torch

from contrastlab.data import (
    PRESET_VIEW_SIZE,
    PRESETS,
    MultiViewAugment,
    ViewSpec,
    augment_view,
    make_augment,
)
from contrastlab.data import augment_ops as ops

RGB_MEAN, RGB_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
PLAIN = ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)


def _batch(b: int = 16, c: int = 3, side: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, side, side), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_shapes_dtypes_and_distinct_views(preset: str) -> None:
    channels = 1 if preset.startswith("grayscale") else 3
    side = 28 if channels == 1 else 32
    aug = make_augment(preset, (0.5,) * channels, (0.25,) * channels, views=3)
    x = _batch(8, channels, side)
    views = aug(x, seed=0)
    assert len(views) == 3
    out = PRESET_VIEW_SIZE.get(preset, side)
    for view in views:
        assert view.shape == (8, channels, out, out) and view.dtype == torch.float32
        assert torch.isfinite(view).all()
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.allclose(views[i], views[j])
    # every sample differs between two views (its own parameters)
    per_sample = (views[0] - views[1]).flatten(1).abs().amax(dim=1)
    assert (per_sample > 0).all()


def test_same_seed_same_views_and_generator_advances() -> None:
    aug = make_augment("byol", RGB_MEAN, RGB_STD, views=2)
    x = _batch()
    first, again = aug(x, seed=7), aug(x, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(aug(x, seed=8)[0], first[0])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(aug(x, generator=g1)[1], aug(x, generator=g2)[1])
    assert not torch.equal(aug(x, generator=g1)[1], aug(x, generator=torch.Generator()
                                                          .manual_seed(3))[1])
    torch.manual_seed(11)
    a = aug(x)
    torch.manual_seed(11)
    assert torch.equal(aug(x)[0], a[0])  # no seed: follows torch.manual_seed


def test_size_channels_last_and_errors() -> None:
    aug = make_augment("simclr-imagenet", RGB_MEAN, RGB_STD, size=24, channels_last=True)
    views = aug(_batch(4, 3, 40), seed=0)
    assert views[0].shape == (4, 3, 24, 24)
    assert views[0].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        aug(_batch(2, 1, 8))
    with pytest.raises(ValueError, match="known presets"):
        make_augment("nope", RGB_MEAN, RGB_STD)
    with pytest.raises(ValueError, match="scale"):
        ViewSpec(scale=(0.0, 1.0))


def test_identity_spec_is_normalisation_only() -> None:
    x = _batch(4)
    (view,) = MultiViewAugment([PLAIN], RGB_MEAN, RGB_STD, views=1)(x, seed=0)
    expected = (x.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(view, expected, atol=1e-5, rtol=0)


def test_crop_boxes_stay_in_range() -> None:
    g = torch.Generator().manual_seed(0)
    n, h, w = 20000, 32, 32
    boxes = ops.sample_crop_boxes(n, h, w, (0.08, 1.0), (3 / 4, 4 / 3), g)
    top, left, bh, bw = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= h).all() and (left + bw <= w).all()
    area = bh * bw / (h * w)
    # rounding to whole pixels moves the area a little outside [0.08, 1]
    assert area.min() >= 0.06 and area.max() <= 1.0
    # oracle: torchvision's per-sample loop (rejection of boxes that do not fit), in Python
    rng = random.Random(0)
    areas = []
    for _ in range(n):
        for _attempt in range(10):
            target = rng.uniform(0.08, 1.0) * h * w
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                areas.append(cw * ch / (h * w))
                break
        else:
            areas.append(1.0)
    assert area.mean().item() == pytest.approx(sum(areas) / n, abs=0.01)
    aspect = bw / bh
    assert aspect.min() >= 0.6 and aspect.max() <= 1.6


def test_resized_crop_matches_slicing_and_flip() -> None:
    x = torch.rand(2, 3, 16, 16)
    boxes = torch.tensor([[2.0, 3.0, 8.0, 8.0], [0.0, 0.0, 16.0, 16.0]])
    crop = ops.resized_crop(x[:1], boxes[:1], torch.tensor([False]), (8, 8))
    torch.testing.assert_close(crop[0], x[0, :, 2:10, 3:11], atol=1e-5, rtol=0)
    out = ops.resized_crop(x, boxes, torch.tensor([False, True]), (8, 16))
    # sample 1: full image, mirrored, rows subsampled by 2 -> average of row pairs
    expected = x[1].flip(-1).view(3, 8, 2, 16).mean(dim=2)
    torch.testing.assert_close(out[1], expected, atol=1e-5, rtol=0)


def test_flip_rate_and_grayscale_rate() -> None:
    n = 4000
    x = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    x[:, 0, :, 0] = 255  # red left column: a mirror moves it to the right
    flipped = augment_view(x.float() / 255, ViewSpec(scale=(1, 1), ratio=(1, 1), jitter_p=0,
                                                     gray_p=0.2), (4, 4),
                           torch.Generator().manual_seed(0))
    rate = (flipped[:, :, :, 3].sum(dim=(1, 2)) > 0).float().mean().item()
    assert rate == pytest.approx(0.5, abs=0.04)
    gray = (flipped[:, 0] == flipped[:, 1]).flatten(1).all(dim=1).float().mean().item()
    assert gray == pytest.approx(0.2, abs=0.03)


def test_jitter_factors_in_range_and_probability() -> None:
    n = 4000
    x = torch.full((n, 1, 2, 2), 0.5)
    spec = ViewSpec(scale=(1, 1), ratio=(1, 1), flip_p=0, brightness=0.4, contrast=0.0,
                    saturation=0.0, hue=0.0, jitter_p=0.8, gray_p=0)
    out = augment_view(x, spec, (2, 2), torch.Generator().manual_seed(1))[:, 0, 0, 0] / 0.5
    assert out.min() >= 0.6 - 1e-6 and out.max() <= 1.4 + 1e-6
    changed = ((out - 1).abs() > 1e-6).float().mean().item()
    assert changed == pytest.approx(0.8, abs=0.03)


def test_hue_matches_colorsys_and_saturation_contrast_limits() -> None:
    x = torch.rand(3, 3, 4, 4)
    x[0, :, 0, 0] = 0.5  # a grey pixel
    shift = torch.tensor([0.1, -0.3, 0.5])
    out = ops.adjust_hue(x, shift)
    ref = torch.empty_like(x)
    for b in range(3):
        for i in range(4):
            for j in range(4):
                h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
                ref[b, :, i, j] = torch.tensor(colorsys.hsv_to_rgb((h + shift[b].item()) % 1, s, v))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    gray = ops.adjust_saturation(x, torch.zeros(3))
    torch.testing.assert_close(gray, ops.grayscale(x).expand_as(x))
    flat = ops.adjust_contrast(x, torch.zeros(3))
    torch.testing.assert_close(flat, ops.grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
                               .expand_as(x))
    torch.testing.assert_close(ops.adjust_brightness(x, torch.ones(3)), x)


def test_hue_exact_on_ties_grey_and_wraparound() -> None:
    pixels = [(0.7, 0.2, 0.7), (0.7, 0.7, 0.2), (0.1, 0.7, 0.7), (0.5, 0.5, 0.5), (1, 0, 0),
              (0, 0, 1), (0.3, 0.9, 0.9), (0, 0, 0), (1, 1, 1), (0.2, 0.1, 0.9)]
    shifts = [-0.5, -0.25, -0.1, 0.0, 0.1, 1 / 6, 0.3, 0.5]
    x = torch.tensor(pixels).T.reshape(1, 3, 1, len(pixels)).repeat(len(shifts), 1, 1, 1)
    out = ops.adjust_hue(x, torch.tensor(shifts))
    for b, shift in enumerate(shifts):
        for j, pixel in enumerate(pixels):
            h, s, v = colorsys.rgb_to_hsv(*pixel)
            expected = torch.tensor(colorsys.hsv_to_rgb((h + shift) % 1, s, v), dtype=torch.float32)
            torch.testing.assert_close(out[b, :, 0, j], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ops.adjust_hue(x, torch.zeros(len(shifts))), x, atol=1e-6, rtol=0)


def test_color_jitter_chunks_and_inplace(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(37, 3, 8, 8, generator=g)
    factors = torch.cat([0.5 + torch.rand(37, 3, generator=g), torch.rand(37, 1, generator=g)
                         - 0.5], dim=1)
    whole = ops.color_jitter(x, factors, [2, 0, 3, 1])
    # one op after the other, as the public functions
    step = ops.adjust_contrast(ops.adjust_hue(ops.adjust_brightness(ops.adjust_saturation(
        x, factors[:, 2]), factors[:, 0]), factors[:, 3]), factors[:, 1])
    torch.testing.assert_close(whole, step, atol=1e-6, rtol=0)
    monkeypatch.setattr(ops, "_CHUNK_BYTES", 5 * 3 * 8 * 8 * 4)  # chunks of 5 samples
    y = x.clone()
    assert ops.color_jitter(y, factors, [2, 0, 3, 1], inplace=True) is y
    torch.testing.assert_close(y, whole, atol=1e-6, rtol=0)
    unchanged = ops.color_jitter(x, torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(37, 4),
                                 [0, 1, 2])
    assert torch.equal(unchanged, x)  # identity factors: bit-exact for these three


def test_blur_and_solarize() -> None:
    x = torch.rand(4, 3, 16, 16)
    blurred = ops.gaussian_blur(x, torch.full((4,), 2.0), 5)
    assert blurred.std() < x.std()
    torch.testing.assert_close(ops.solarize(torch.tensor([0.2, 0.5, 0.9])),
                               torch.tensor([0.2, 0.5, 0.1]))
    spec = PRESETS["byol"][1]
    assert spec.solarize_p == 0.2 and spec.blur_p == 0.1 and PRESETS["byol"][0].blur_p == 1.0


def test_simclr_parameters_follow_the_paper() -> None:
    (cifar,) = PRESETS["simclr-cifar"]
    assert (cifar.brightness, cifar.contrast, cifar.saturation, cifar.hue) == pytest.approx(
        (0.4, 0.4, 0.4, 0.1))
    assert cifar.jitter_p == 0.8 and cifar.gray_p == 0.2 and cifar.blur_p == 0.0
    assert cifar.scale == (0.08, 1.0) and cifar.ratio == pytest.approx((3 / 4, 4 / 3))
    (imnet,) = PRESETS["simclr-imagenet"]
    assert imnet.hue == pytest.approx(0.2) and imnet.blur_p == 0.5
    (gray,) = PRESETS["grayscale"]
    assert gray.hue == 0 and gray.saturation == 0 and gray.gray_p == 0
    assert gray.solarize_p == 0.5 and gray.solarize_threshold == (0.25, 0.75)
    assert gray.solarize_curve == 0.5 and PRESETS["grayscale-digits"][0].solarize_curve == 0.0
    assert PRESETS["grayscale-supervised"][0].solarize_p == 0.0
    assert not math.isnan(gray.brightness)


def test_crop_min_replaces_the_presets_lower_crop_bound() -> None:
    aug = make_augment("grayscale", (0.5,), (0.25,), crop_min=0.6)
    assert all(spec.scale == (0.6, 1.0) for spec in aug.specs)
    assert make_augment("grayscale", (0.5,), (0.25,)).specs[0].scale == (0.2, 1.0)
    # crop_min = 1 keeps the whole image: only flip and jitter remain
    whole = make_augment("grayscale", (0.5,), (0.25,), crop_min=1.0)
    assert whole.specs[0].scale == (1.0, 1.0)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="crop_min"):
            make_augment("grayscale", (0.5,), (0.25,), crop_min=bad)


def test_supervised_default_preset_only_where_one_is_defined() -> None:
    from types import SimpleNamespace

    from contrastlab.data import augment_for

    fmnist = SimpleNamespace(name="fashion-mnist", mean=(0.3,), std=(0.35,))
    cifar = SimpleNamespace(name="cifar10", mean=(0.5,) * 3, std=(0.25,) * 3)
    assert augment_for(fmnist).specs == PRESETS["grayscale"]
    assert augment_for(fmnist, supervised=True).specs == PRESETS["grayscale-supervised"]
    assert PRESETS["grayscale-supervised"][0].scale == (1.0, 1.0)
    # an explicit preset and crop_min still win
    assert augment_for(fmnist, "grayscale", supervised=True).specs == PRESETS["grayscale"]
    assert augment_for(fmnist, supervised=True, crop_min=0.3).specs[0].scale == (0.3, 1.0)
    assert augment_for(cifar, supervised=True).specs == PRESETS["simclr-cifar"]
    assert augment_for(fmnist, one_directional=True).specs == PRESETS["grayscale-asym"]
    assert augment_for(cifar, one_directional=True).specs == PRESETS["simclr-cifar"]


def _erased_loop(images: torch.Tensor, boxes: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Random Erasing written pixel by pixel from its definition."""
    out = images.clone()
    for i, (top, left, h, w) in enumerate(boxes.long().tolist()):
        for r in range(top, top + h):
            for c in range(left, left + w):
                out[i, :, r, c] = fill[i, :, r, c]
    return out


def test_erase_boxes_fit_and_erase_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = ops.sample_erase_boxes(2000, 28, 20, (0.02, 0.33), (0.3, 3.3), g)
    top, left, h, w = boxes.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + h <= 28).all() and (left + w <= 20).all())
    area = h * w / (28 * 20)
    drawn = area > 0
    assert drawn.float().mean() > 0.95  # nearly every sample finds a box within 10 draws
    assert area[drawn].min() >= 0.01 and area[drawn].max() <= 0.36
    # a range no box can fit gives empty boxes (nothing erased), not a fallback
    none = ops.sample_erase_boxes(50, 8, 8, (1.0, 1.0), (3.0, 3.3), g)
    assert bool((none[:, 2] * none[:, 3] == 0).all())

    images = torch.rand(6, 3, 9, 7, generator=g)
    boxes = ops.sample_erase_boxes(6, 9, 7, (0.1, 0.5), (0.3, 3.3), g)
    noise = torch.rand(images.shape, generator=g)
    torch.testing.assert_close(ops.erase(images, boxes, noise), _erased_loop(images, boxes, noise),
                               rtol=0, atol=0)
    const = ops.erase(images, boxes, 0.25)
    torch.testing.assert_close(const, _erased_loop(images, boxes, torch.full_like(images, 0.25)),
                               rtol=0, atol=0)


def test_erase_probability_spec_and_override() -> None:
    x = _batch(b=400, c=1, side=28)
    spec = replace(PLAIN, erase_p=0.5, erase_value=0.0)
    view = augment_view(x.float() / 255, spec, (28, 28), torch.Generator().manual_seed(1))
    erased = ((view == 0) & (x.float() != 0)).flatten(1).any(dim=1)
    assert 0.4 < erased.float().mean() < 0.6
    # noise fill: values stay in [0, 1] and the same seed gives the same views
    noisy = make_augment("grayscale", (0.5,), (0.25,), erase_p=1.0)
    assert all(s.erase_p == 1.0 and s.erase_value is None for s in noisy.specs)
    a, b = noisy(x, seed=3), noisy(x, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    # erase_p 0 (the presets' default) leaves the random stream, so the views, unchanged
    plain = make_augment("grayscale", (0.5,), (0.25,))
    zero = make_augment("grayscale", (0.5,), (0.25,), erase_p=0.0)
    assert all(torch.equal(u, v) for u, v in zip(plain(x, seed=5), zero(x, seed=5), strict=True))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="erase_p"):
            make_augment("grayscale", (0.5,), (0.25,), erase_p=bad)
    with pytest.raises(ValueError, match="erase_scale"):
        ViewSpec(erase_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="erase_ratio"):
        ViewSpec(erase_ratio=(0.0, 2.0))


def test_preset_view_size_default_and_override() -> None:
    """The "grayscale" preset makes 20×20 views of 28×28 images unless a size is passed;
    presets without a view size keep the images' size."""
    asymmetric = ("grayscale-asym", "grayscale-asym-crop", "grayscale-asym-strong")
    assert PRESET_VIEW_SIZE == {"grayscale": 20} | dict.fromkeys(asymmetric, 20)
    x = _batch(6, 1, 28)
    small = make_augment("grayscale", (0.5,), (0.25,))(x, seed=0)
    assert all(v.shape == (6, 1, 20, 20) for v in small)
    full = make_augment("grayscale", (0.5,), (0.25,), size=28)(x, seed=0)
    assert all(v.shape == (6, 1, 28, 28) for v in full)
    kept = make_augment("grayscale-supervised", (0.5,), (0.25,))(x, seed=0)
    assert all(v.shape == (6, 1, 28, 28) for v in kept)


def test_solarize_probability_override() -> None:
    """``solarize_p`` (``data.solarize_p``) sets every view's solarization: at p 1 the first
    view is the p-0 view with the pixels at or above 0.5 inverted (the solarize draw comes after
    the others), and no pixel of any view stays above 0.5."""
    x = _batch(b=48, c=1, side=28)
    # the preset draws a threshold per view and curves some views instead
    at_half = {"solarize_threshold": (0.5, 0.5), "solarize_curve": 0.0}
    plain = make_augment("grayscale", (0.5,), (0.25,), solarize_p=0.0, **at_half)
    always = make_augment("grayscale", (0.5,), (0.25,), solarize_p=1.0, **at_half)
    assert all(s.solarize_p == 1.0 for s in always.specs)
    assert all(s.solarize_p == 0.5 for s in make_augment("grayscale", (0.5,), (0.25,)).specs)
    p0, p1 = plain(x, seed=7)[0], always(x, seed=7)
    pixels = p0 * 0.25 + 0.5
    expected = (torch.where(pixels >= 0.5, 1.0 - pixels, pixels) - 0.5) / 0.25
    near = (pixels - 0.5).abs() < 1e-5  # within rounding of the threshold: either side
    assert (pixels > 0.6).any() and not near.all()
    torch.testing.assert_close(p1[0][~near], expected[~near], rtol=0, atol=1e-5)
    assert all((v * 0.25 + 0.5).max() <= 0.5 + 1e-5 for v in p1)
    half = make_augment("grayscale", (0.5,), (0.25,), solarize_p=0.5, **at_half)
    changed = (p0 != half(x, seed=7)[0]).flatten(1).any(dim=1).float().mean().item()
    assert 0.25 < changed < 0.75  # about half of the first view's samples
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="solarize_p"):
            make_augment("grayscale", (0.5,), (0.25,), solarize_p=bad)


def test_asymmetric_grayscale_preset_keeps_the_second_views_grey_levels() -> None:
    """"grayscale-asym": the first view is the "grayscale" view bit for bit (same seed), the
    second the same spec without grey-level maps, so it differs from "grayscale"'s on about the
    half of the samples that preset remaps."""
    gray, asym = PRESETS["grayscale"][0], PRESETS["grayscale-asym"]
    assert asym == (gray, replace(gray, solarize_p=0.0)) and gray.solarize_p == 0.5
    calm_crop = (gray, replace(gray, solarize_p=0.0, scale=(0.4, 1.0)))
    assert PRESETS["grayscale-asym-crop"] == calm_crop and gray.scale == (0.2, 1.0)
    strong = (replace(gray, solarize_p=0.8), replace(gray, solarize_p=0.0))
    assert PRESETS["grayscale-asym-strong"] == strong
    x = _batch(b=64, c=1, side=28)
    ref = make_augment("grayscale", (0.5,), (0.25,))(x, seed=3)
    out = make_augment("grayscale-asym", (0.5,), (0.25,))(x, seed=3)
    assert all(v.shape == (64, 1, 20, 20) for v in out)
    assert torch.equal(out[0], ref[0])
    changed = (out[1] != ref[1]).flatten(1).any(dim=1).float().mean().item()
    assert 0.3 < changed < 0.7


def test_solarize_threshold_drawn_per_view() -> None:
    """``solarize_threshold`` (lo, hi) solarizes each view at its own threshold t ~ U(lo, hi):
    with p 1 every sample of the first view is the unsolarized view with exactly its pixels at
    or above one t in [lo, hi] inverted, the implied thresholds differ between samples, and a
    fixed threshold draws nothing (other specs keep their random stream)."""
    x = _batch(b=64, c=1, side=28)
    args = ("grayscale", (0.0,), (1.0,))  # mean 0, std 1: the views are the pixels themselves
    plain = make_augment(*args, solarize_p=0.0)(x, seed=3)[0]
    ranged = make_augment(
        *args, solarize_p=1.0, solarize_threshold=(0.25, 0.75), solarize_curve=0.0
    )(x, seed=3)[0]
    implied = []
    for before, after in zip(plain.flatten(1), ranged.flatten(1), strict=True):
        flipped = (after - (1.0 - before)).abs() < 1e-6
        kept = (after - before).abs() < 1e-6
        assert bool((flipped | kept).all())
        moved = flipped & ~kept  # pixels at 0.5 read the same either way
        low = before[kept & ~flipped].max().item() if (kept & ~flipped).any() else 0.0
        high = before[moved].min().item() if moved.any() else 1.0
        assert low < high  # one threshold separates the kept pixels from the inverted ones
        assert low < 0.75 + 1e-6 and high >= 0.25 - 1e-6
        implied.append((low, high))
    assert max(lo for lo, _ in implied) > min(hi for _, hi in implied)  # not one threshold
    def state_after(threshold: tuple[float, float]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(5)
        spec = replace(PLAIN, solarize_p=0.5, solarize_threshold=threshold)
        augment_view(x.float() / 255, spec, (28, 28), gen)
        return gen.get_state()

    assert torch.equal(state_after((0.5, 0.5)), state_after((0.3, 0.3)))  # nothing drawn
    assert not torch.equal(state_after((0.5, 0.5)), state_after((0.25, 0.75)))
    per_sample = ops.solarize(torch.full((2, 1, 1, 2), 0.6), torch.tensor([0.5, 0.7]))
    torch.testing.assert_close(per_sample.flatten(1), torch.tensor([[0.4, 0.4], [0.6, 0.6]]))
    for bad in ((0.7, 0.3), (-0.1, 0.5), (0.5, 1.2)):
        with pytest.raises(ValueError, match="solarize_threshold"):
            make_augment(*args, solarize_threshold=bad)
    with pytest.raises(ValueError, match="unknown view overrides.*solarise_p"):
        make_augment(*args, solarise_p=0.5)


def test_translate_is_a_zero_padded_shift() -> None:
    """With no crop, a view is the image shifted by whole pixels with black coming in: the same
    as cropping the zero-padded image at the shifted offset (the supervised random crop)."""
    x = _batch(b=64, c=1, side=28).float() / 255
    spec = replace(PLAIN, translate=0.1)
    gen = torch.Generator().manual_seed(4)
    view = augment_view(x, spec, (28, 28), gen)
    pad = 3  # round(0.1 * 28) = 3 is the largest shift
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    shifts = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(-pad, pad + 1)
            for dx in range(-pad, pad + 1)
            if torch.allclose(view[i], padded[i, :, pad + dy : pad + dy + 28, pad + dx : pad + dx + 28],
                              atol=1e-5, rtol=0)
        ]
        assert matches, f"view {i} is no whole-pixel zero-padded shift of its image"
        shifts.update(matches)
    assert len(shifts) > 10  # per-sample shifts, on both axes
    assert {dy for dy, _ in shifts} >= {-2, 0, 2} and {dx for _, dx in shifts} >= {-2, 0, 2}
    # the random stream: the same generator state gives the same views
    again = augment_view(x, spec, (28, 28), torch.Generator().manual_seed(4))
    torch.testing.assert_close(view, again, rtol=0, atol=0)
    # translate 0 (every preset's default) draws nothing, so existing views are unchanged
    plain = make_augment("grayscale", (0.5,), (0.25,))
    zero = make_augment("grayscale", (0.5,), (0.25,), translate=0.0)
    xb = _batch(b=32, c=1, side=28)
    assert all(torch.equal(u, v) for u, v in zip(plain(xb, seed=5), zero(xb, seed=5), strict=True))
    assert all(s.translate == 0.25 for s in make_augment("grayscale", (0.5,), (0.25,), translate=0.25).specs)
    for bad in (-0.1, 0.6):
        with pytest.raises(ValueError, match="translate"):
            make_augment("grayscale", (0.5,), (0.25,), translate=bad)
        with pytest.raises(ValueError, match="translate"):
            ViewSpec(translate=bad)
