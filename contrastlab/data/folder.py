"""Reader for a folder of the user's own images (pillow is an optional dependency).

Two layouts: one sub-folder per class (``root/cat/*.png``, labels in sorted folder order), or
images directly in ``root`` (unlabeled, labels -1). Images are decoded once into one uint8
tensor; they must share a size unless ``size`` is given, in which case each is resized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading an image folder needs pillow: pip install pillow") from err
    return Image


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    image_module = _pil()
    try:
        with image_module.open(path) as image:
            image = image.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), image_module.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from err
    return array[:, :, None] if array.ndim == 2 else array


def load_image_folder(
    root: Path, size: int | tuple[int, int] | None = None, mode: str = "RGB"
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Load every image under ``root``.

    Args:
        root: a folder with one sub-folder per class, or with the images themselves.
        size: output (H, W) (an int means square); None keeps the images' own common size.
        mode: pillow mode, "RGB" (3 channels) or "L" (1 channel).

    Returns:
        ``(images, labels, classes)``: uint8 (N, C, H, W), int64 (N,) (-1 if unlabeled),
        class names (the sub-folder names; empty if unlabeled).

    Raises:
        FileNotFoundError: if ``root`` is missing or holds no images.
        ValueError: naming the file, if an image cannot be decoded or sizes differ with
            ``size=None``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    hw = (size, size) if isinstance(size, int) else size
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    entries: list[tuple[Path, int]] = []
    classes: tuple[str, ...] = ()
    if class_dirs:
        classes = tuple(p.name for p in class_dirs)
        for label, class_dir in enumerate(class_dirs):
            entries.extend((path, label) for path in _images_in(class_dir))
    else:
        entries = [(path, -1) for path in _images_in(root)]
    if not entries:
        raise FileNotFoundError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root} or its sub-folders"
        )
    arrays: list[np.ndarray] = []
    for path, _ in entries:
        array = _decode(path, mode, hw)
        if arrays and array.shape != arrays[0].shape:
            raise ValueError(
                f"{path}: size {array.shape[:2]} differs from {arrays[0].shape[:2]} of "
                f"{entries[0][0]}; pass image_size= to resize every image"
            )
        arrays.append(array)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in entries], dtype=torch.int64)
    return images, labels, classes
