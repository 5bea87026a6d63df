"""Views per second: contrastlab's batched augmentation vs a per-sample numpy/PIL pipeline.

Ours: the whole uint8 dataset in one tensor, a batch is an index gather, and
``MultiViewAugment`` makes 2 views of the batch with torch ops (2 intra-op threads).
Baseline: the usual kind of pipeline, a ``Dataset`` whose ``__getitem__`` augments one image
with PIL/numpy (random resized crop, flip, colour jitter incl. hue, grayscale, normalise),
batched by a ``DataLoader`` with 2 worker processes. Both produce 2 views per image with the
SimCLR-CIFAR parameters (or the grayscale preset's, on Fashion-MNIST).

Run:  .venv/bin/python benchmarks/augment/bench_augment.py [--batches 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable

# OpenMP threads of the batched side wait passively (as the contrastlab CLI sets): spinning
# waits made 2 threads on a shared 2-core machine ~8x slower. Set before torch loads. The
# baseline's DataLoader workers run torch with 1 thread, so this does not change them.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch.utils.data import DataLoader, Dataset

from contrastlab.data import ViewSpec, load_dataset, make_augment


def _pil_view(
    image: Image.Image, spec: ViewSpec, rng: random.Random, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """One view of one PIL image, as a normalised float32 (C, H, W) array."""
    width, height = image.size
    box = (0, 0, width, height)
    for _ in range(10):
        area = rng.uniform(*spec.scale) * width * height
        aspect = math.exp(rng.uniform(math.log(spec.ratio[0]), math.log(spec.ratio[1])))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
            box = (left, top, left + w, top + h)
            break
    out = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
    if rng.random() < spec.flip_p:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < spec.jitter_p:
        ops = [0, 1, 2, 3]
        rng.shuffle(ops)
        for op in ops:
            if op == 0 and spec.brightness:
                out = ImageEnhance.Brightness(out).enhance(
                    rng.uniform(1 - spec.brightness, 1 + spec.brightness)
                )
            elif op == 1 and spec.contrast:
                out = ImageEnhance.Contrast(out).enhance(
                    rng.uniform(1 - spec.contrast, 1 + spec.contrast)
                )
            elif op == 2 and spec.saturation and out.mode == "RGB":
                out = ImageEnhance.Color(out).enhance(
                    rng.uniform(1 - spec.saturation, 1 + spec.saturation)
                )
            elif op == 3 and spec.hue and out.mode == "RGB":
                hsv = np.array(out.convert("HSV"))
                shift = int(rng.uniform(-spec.hue, spec.hue) * 255)
                hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift).astype(np.uint8)
                out = Image.fromarray(hsv, "HSV").convert("RGB")
    if out.mode == "RGB" and rng.random() < spec.gray_p:
        out = out.convert("L").convert("RGB")
    array = np.asarray(out, dtype=np.float32) / 255.0
    array = array[:, :, None] if array.ndim == 2 else array
    return ((array - mean) / std).transpose(2, 0, 1)


class PerSampleViews(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The per-sample baseline: two PIL-augmented views of image i."""

    def __init__(
        self, images: np.ndarray, spec: ViewSpec, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        self.images = images  # (N, H, W, C) uint8
        self.spec = spec
        self.mean = np.array(mean, np.float32)
        self.std = np.array(std, np.float32)
        self.rng = random.Random(0)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        array = self.images[i]
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        return (
            torch.from_numpy(_pil_view(image, self.spec, self.rng, self.mean, self.std)),
            torch.from_numpy(_pil_view(image, self.spec, self.rng, self.mean, self.std)),
        )


def _rate(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    views = run()
    return views / max(time.perf_counter() - start, 1e-9)


def bench(
    name: str,
    images: torch.Tensor,
    preset: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch: int,
    batches: int,
    repeats: int,
) -> dict[str, object]:
    # full-size views, like the per-sample pipeline below (the "grayscale" preset would
    # otherwise make 20x20 ones)
    aug = make_augment(preset, mean, std, views=2, size=int(images.shape[-1]))
    n = images.shape[0]
    generator = torch.Generator().manual_seed(0)

    def ours() -> int:
        count = 0
        for _ in range(batches):
            index = torch.randint(0, n, (batch,), generator=generator)
            views = aug(images[index], generator=generator)
            count += sum(v.shape[0] for v in views)
        return count

    dataset = PerSampleViews(images.permute(0, 2, 3, 1).numpy(), aug.specs[0], mean, std)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        prefetch_factor=2,
        drop_last=True,
    )

    def baseline() -> int:
        count = 0
        iterator = iter(loader)
        for _ in range(batches):
            first, second = next(iterator)
            count += first.shape[0] + second.shape[0]
        return count

    ours()  # warm-up
    next(iter(loader))
    ours_rates, base_rates = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        ours_rates.append(_rate(ours))
        base_rates.append(_rate(baseline))
    ours_med, base_med = statistics.median(ours_rates), statistics.median(base_rates)
    ratios = [o / b for o, b in zip(ours_rates, base_rates, strict=True)]
    return {
        "name": name,
        "preset": preset,
        "ours": ours_med,
        "baseline": base_med,
        "ratio": ours_med / base_med,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--batches", type=int, default=8, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fashion = load_dataset("fashion-mnist", "train")
    rgb = torch.randint(
        0, 256, (10000, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    cifar_stats = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    cases = [
        ("Fashion-MNIST 1x28x28", fashion.images, "simclr-cifar", fashion.mean, fashion.std),
        ("Fashion-MNIST 1x28x28", fashion.images, "grayscale", fashion.mean, fashion.std),
        ("random 3x32x32 (CIFAR-sized)", rgb, "simclr-cifar", *cifar_stats),
    ]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
        f"{args.batches} batches x {args.repeats} runs, {platform.processor() or platform.machine()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average at start {load}"
    )
    print(
        "| data | preset | ours (views/s) | per-sample PIL, 2 workers (views/s) | ratio "
        "(median) | ratio range |"
    )
    print("|---|---|---:|---:|---:|---|")
    for name, images, preset, mean, std in cases:
        r = bench(name, images, preset, mean, std, args.batch, args.batches, args.repeats)
        print(
            f"| {r['name']} | {r['preset']} | {r['ours']:,.0f} | {r['baseline']:,.0f} | "
            f"{r['ratio']:.1f}x | {r['ratio_min']:.1f}-{r['ratio_max']:.1f}x |",
            flush=True,
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at end {load}")


if __name__ == "__main__":
    main()
