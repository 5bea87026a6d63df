"""Writers of small files in the official formats, shared by the data tests."""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file (gzipped if the name ends in .gz) holding a uint8 array."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_idx_dataset(folder: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """The four official MNIST-like .gz files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[split] = (images, labels)
    return out


def write_cifar(folder: Path, variant: str = "cifar10", n: int = 6, seed: int = 0) -> dict:
    """The official batch files (pickle protocol 2, as the Python 2 originals)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    num_classes = 10 if variant == "cifar10" else 100
    if variant == "cifar10":
        names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key, meta = b"labels", ("batches.meta", b"label_names")
    else:
        names = {"train": ["train"], "test": ["test"]}
        label_key, meta = b"fine_labels", ("meta", b"fine_label_names")
    out: dict = {"classes": [f"class{i}" for i in range(num_classes)]}
    with open(folder / meta[0], "wb") as handle:
        pickle.dump({meta[1]: [c.encode() for c in out["classes"]]}, handle, protocol=2)
    for split, files in names.items():
        images, labels = [], []
        for name in files:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            targets = rng.integers(0, num_classes, n).tolist()
            batch = {b"data": data, label_key: targets, b"batch_label": name.encode()}
            if variant == "cifar100":
                batch[b"coarse_labels"] = [t // 5 for t in targets]
            with open(folder / name, "wb") as handle:
                pickle.dump(batch, handle, protocol=2)
            images.append(data.reshape(n, 3, 32, 32))
            labels.extend(targets)
        out[split] = (np.concatenate(images), np.array(labels))
    return out


def make_tar(archive: Path, folder: Path) -> Path:
    """A .tar.gz holding ``folder`` as its top-level directory."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def write_stl10(folder: Path, n_train: int = 4, n_test: int = 3, n_unlabeled: int = 5,
                seed: int = 0) -> dict:
    """STL-10's binary files: images column-major per channel, labels 1-based."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
               "truck"]
    (folder / "class_names.txt").write_text("\n".join(classes) + "\n")
    out: dict = {"classes": classes}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)  # row-major truth
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # column-major
        labels = None
        if split != "unlabeled":
            labels = rng.integers(0, 10, n)
            (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
        out[split] = (images, labels)
    return out


def write_svhn(path: Path, n: int = 7, seed: int = 0, compress: bool = False) -> tuple:
    """An SVHN .mat file written by scipy.io.savemat: X (32, 32, 3, N), y (N, 1) in 1..10."""
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.float64)
    y[0, 0] = 10.0  # the digit 0
    scipy_io.savemat(path, {"X": x, "y": y}, do_compression=compress)
    return x, y


def write_png(path: Path, array: np.ndarray) -> Path:
    """A PNG of an (H, W, 3) or (H, W) uint8 array."""
    image_module = pytest.importorskip("PIL.Image")
    image_module.fromarray(array).save(path, format="PNG")
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to a fraction of its length."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture
def fmt() -> SimpleNamespace:
    """The writers above, as one namespace."""
    return SimpleNamespace(
        write_idx=write_idx, write_idx_dataset=write_idx_dataset, write_cifar=write_cifar,
        make_tar=make_tar, write_stl10=write_stl10, write_svhn=write_svhn, write_png=write_png,
        truncate=truncate,
    )


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty cache and no mirror, so nothing touches ~/.cache."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CONTRASTLAB_DATA", str(cache))
    monkeypatch.delenv("CONTRASTLAB_MIRROR", raising=False)
    return cache
