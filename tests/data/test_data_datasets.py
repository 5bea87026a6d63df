"""Dataset readers on real Fashion-MNIST (Debian files) and on small official-format files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastlab.data import (
    ImageDataset,
    available_datasets,
    compute_mean_std,
    load_dataset,
    sources,
)

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(not DEBIAN.is_dir(), reason="dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def fashion_train() -> ImageDataset:
    if not DEBIAN.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    return load_dataset("fashion-mnist", "train", root=DEBIAN)


@needs_debian
def test_fashion_mnist_published_shapes_and_counts(fashion_train: ImageDataset) -> None:
    test = load_dataset("fashion-mnist", "test")  # default search reaches the Debian folder
    assert fashion_train.images.shape == (60000, 1, 28, 28)
    assert test.images.shape == (10000, 1, 28, 28)
    assert fashion_train.images.dtype == torch.uint8 and fashion_train.labels.dtype == torch.int64
    assert len(fashion_train.classes) == 10 and fashion_train.classes[0] == "T-shirt/top"
    assert fashion_train.labels.bincount().tolist() == [6000] * 10
    assert test.labels.bincount().tolist() == [1000] * 10
    assert fashion_train.is_labeled


@needs_debian
def test_fashion_mnist_stats_table_matches_data(fashion_train: ImageDataset) -> None:
    mean, std = compute_mean_std(fashion_train.images)
    assert fashion_train.mean == pytest.approx(mean, abs=1e-3)
    assert fashion_train.std == pytest.approx(std, abs=1e-3)


def test_unknown_name_and_split_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"cifar10.*fashion-mnist.*svhn"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="train, test"):
        load_dataset("cifar10", "unlabeled")
    assert set(available_datasets()) >= {"fashion-mnist", "mnist", "cifar10", "cifar100",
                                         "stl10", "svhn", "image-folder"}


def test_missing_files_say_where_to_put_them(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_dataset("cifar10", root=tmp_path)


def test_idx_reader(tmp_path: Path, fmt) -> None:
    arrays = fmt.write_idx_dataset(tmp_path / "mnist")
    ds = load_dataset("mnist", "test", root=tmp_path)  # root/name is searched too
    images, labels = arrays["test"]
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
    assert ds.mean == pytest.approx((0.1307,))


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_idx_corrupt_file_named(tmp_path: Path, fmt, damage: str) -> None:
    fmt.write_idx_dataset(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    if damage == "truncate":
        fmt.truncate(bad, 0.6)
    else:
        bad.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz"):
        load_dataset("mnist", root=tmp_path)


def test_idx_header_size_mismatch(tmp_path: Path, fmt) -> None:
    path = fmt.write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    from contrastlab.data.idx import read_idx

    with pytest.raises(ValueError, match=r"x: IDX header announces 2352"):
        read_idx(path)


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_batches(tmp_path: Path, fmt, variant: str) -> None:
    folder = tmp_path / ("cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python")
    truth = fmt.write_cifar(folder, variant)
    for split in ("train", "test"):
        ds = load_dataset(variant, split, root=tmp_path)
        images, labels = truth[split]
        assert ds.images.shape == (len(labels), 3, 32, 32)
        assert torch.equal(ds.images, torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels))
        assert list(ds.classes) == truth["classes"]
    # root may also be the extracted folder itself
    assert len(load_dataset(variant, "test", root=folder)) == len(truth["test"][1])


def test_cifar_from_archive(tmp_path: Path, fmt) -> None:
    src = tmp_path / "src" / "cifar-10-batches-py"
    truth = fmt.write_cifar(src)
    root = tmp_path / "root"
    root.mkdir()
    fmt.make_tar(root / "cifar-10-python.tar.gz", src)
    ds = load_dataset("cifar10", "train", root=root)
    assert torch.equal(ds.labels, torch.from_numpy(truth["train"][1]))
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_cifar_truncated_and_malicious(tmp_path: Path, fmt) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fmt.write_cifar(folder)
    fmt.truncate(folder / "data_batch_3")
    with pytest.raises(ValueError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path)

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ValueError, match=r"test_batch.*refusing"):
        load_dataset("cifar10", "test", root=tmp_path)


def test_stl10_splits_and_layout(tmp_path: Path, fmt) -> None:
    truth = fmt.write_stl10(tmp_path / "stl10_binary")
    train = load_dataset("stl10", "train", root=tmp_path)
    assert train.images.shape == (4, 3, 96, 96)
    assert torch.equal(train.images, torch.from_numpy(truth["train"][0]))  # column-major undone
    assert torch.equal(train.labels, torch.from_numpy(truth["train"][1]))  # 1-based undone
    assert train.classes[0] == "airplane"
    unlabeled = load_dataset("stl10", "unlabeled", root=tmp_path)
    assert unlabeled.labels.tolist() == [-1] * 5 and not unlabeled.is_labeled
    both = load_dataset("stl10", "train+unlabeled", root=tmp_path)
    assert len(both) == 9 and torch.equal(both.images[4:], unlabeled.images)
    assert len(load_dataset("stl10", "test", root=tmp_path)) == 3


def test_stl10_corrupt(tmp_path: Path, fmt) -> None:
    folder = tmp_path / "stl10_binary"
    fmt.write_stl10(folder)
    fmt.truncate(folder / "unlabeled_X.bin", 0.7)
    with pytest.raises(ValueError, match=r"unlabeled_X.bin"):
        load_dataset("stl10", "unlabeled", root=tmp_path)
    np.zeros(4, np.uint8).tofile(folder / "train_y.bin")  # label 0 is invalid (1-based)
    with pytest.raises(ValueError, match=r"train_y.bin.*1-based"):
        load_dataset("stl10", "train", root=tmp_path)


@pytest.mark.parametrize("compress", [False, True])
def test_svhn_mat(tmp_path: Path, fmt, compress: bool) -> None:
    x, y = fmt.write_svhn(tmp_path / "train_32x32.mat", compress=compress)
    ds = load_dataset("svhn", "train", root=tmp_path)
    assert ds.images.shape == (7, 3, 32, 32)
    # X[row, col, channel, n] -> images[n, channel, row, col]
    assert torch.equal(ds.images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    assert ds.labels[0] == 0  # label 10 is the digit 0
    assert torch.equal(ds.labels, torch.from_numpy(y[:, 0].astype(np.int64) % 10))


def test_svhn_corrupt(tmp_path: Path, fmt) -> None:
    fmt.write_svhn(tmp_path / "test_32x32.mat")
    fmt.truncate(tmp_path / "test_32x32.mat", 0.5)
    with pytest.raises(ValueError, match=r"test_32x32.mat"):
        load_dataset("svhn", "test", root=tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(600))
    with pytest.raises(ValueError, match=r"v7.3"):
        load_dataset("svhn", "test", root=tmp_path)


def test_image_folder(tmp_path: Path, fmt) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arrays[cls, i] = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            fmt.write_png(tmp_path / cls / f"{i}.png", arrays[cls, i])
    ds = load_dataset("image-folder", root=tmp_path)
    assert ds.images.shape == (6, 3, 12, 10) and ds.classes == ("cat", "dog")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(ds.images[4], torch.from_numpy(arrays["dog", 1]).permute(2, 0, 1))
    assert len(ds.mean) == 3  # computed, no table entry
    resized = load_dataset("image-folder", root=tmp_path, image_size=8)
    assert resized.images.shape == (6, 3, 8, 8)


def test_image_folder_unlabeled_and_errors(tmp_path: Path, fmt) -> None:
    fmt.write_png(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    fmt.write_png(tmp_path / "b.png", np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"b.png.*image_size"):
        load_dataset("folder", root=tmp_path)
    ds = load_dataset("folder", root=tmp_path, image_size=(8, 8))
    assert ds.labels.tolist() == [-1, -1] and ds.classes == ()
    (tmp_path / "c.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"c.png"):
        load_dataset("folder", root=tmp_path, image_size=8)
    with pytest.raises(ValueError, match="root="):
        load_dataset("image-folder")


def _toy(n: int = 103) -> ImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageDataset(images, torch.arange(n) % 4, ["a", "b", "c", "d"], "toy")


def test_batches_cover_the_epoch_and_are_seeded() -> None:
    ds = _toy()
    seen = torch.cat([i for i in ds.batch_indices(10, generator=torch.Generator().manual_seed(1))])
    assert sorted(seen.tolist()) == list(range(103))
    again = torch.cat(list(ds.batch_indices(10, generator=torch.Generator().manual_seed(1))))
    assert torch.equal(seen, again)
    sizes = [len(lbl) for _, lbl in ds.batches(10, shuffle=False, drop_last=True)]
    assert sizes == [10] * 10
    images, labels = next(ds.batches(7, shuffle=False))
    assert torch.equal(images[:, 0, 0, 0].long(), torch.arange(7)) and labels.tolist()[:4] == [
        0, 1, 2, 3]
    with pytest.raises(ValueError, match="batch_size"):
        next(ds.batches(0))


def test_split_validation_is_seeded_stratified_and_disjoint() -> None:
    ds = _toy(400)
    train, val = ds.split_validation(0.1, seed=3)
    ids_t = set(train.images[:, 0, 0, 0].tolist())
    assert len(train) == 360 and len(val) == 40 and val.split == "val"
    assert val.labels.bincount().tolist() == [10, 10, 10, 10]
    _, val2 = ds.split_validation(0.1, seed=3)
    assert torch.equal(val.images, val2.images)
    assert train.mean == ds.mean
    assert len(ids_t) + len(set(val.images[:, 0, 0, 0].tolist())) <= 400
    with pytest.raises(ValueError, match="fraction"):
        ds.split_validation(1.5)


def test_container_validation_and_to() -> None:
    ds = _toy(8).to("cpu")
    assert ds.device.type == "cpu" and ds.image_shape == (1, 2, 2)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64), [], "x")
    with pytest.raises(ValueError, match="int64"):
        ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(3), [], "x")


def test_idx_in_torchvisions_layout_and_label_range(tmp_path: Path, fmt) -> None:
    arrays = fmt.write_idx_dataset(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fashion-mnist", "test", root=tmp_path)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["test"][0]))
    fmt.write_idx(tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz",
                  np.full(len(arrays["test"][1]), 10, np.uint8))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: labels must be 0..9"):
        load_dataset("fashion-mnist", "test", root=tmp_path)


def test_unreadable_files_are_not_called_corrupt(tmp_path: Path) -> None:
    # A file the process cannot read is a local problem, not damage to the data.
    from contrastlab.data.cifar import unpickle
    from contrastlab.data.idx import read_idx

    (tmp_path / "folder.gz").mkdir()
    with pytest.raises(IsADirectoryError):
        read_idx(tmp_path / "folder.gz")
    with pytest.raises(IsADirectoryError):
        unpickle(tmp_path / "folder.gz")


def test_empty_multichannel_dataset_and_bad_small_matlab_element(tmp_path: Path, fmt) -> None:
    empty = ImageDataset(
        torch.zeros(0, 3, 4, 4, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), [], "x"
    )
    assert empty.mean == (0.0, 0.0, 0.0) and empty.std == (1.0, 1.0, 1.0)
    from contrastlab.data.svhn import load_svhn

    path = tmp_path / "test_32x32.mat"
    fmt.write_svhn(path, n=3)
    raw = bytearray(path.read_bytes())
    # the name "X" of the first array is a small element (size 1 packed into its tag) after the
    # 128-byte header, the matrix tag (8), the array flags (8 + 8) and 4 dimensions (8 + 16)
    pos = 128 + 8 + 16 + 24
    assert int.from_bytes(raw[pos : pos + 4], "little") == (1 << 16) | 1  # miINT8, 1 byte
    raw[pos + 2 : pos + 4] = (255).to_bytes(2, "little")  # now it claims 255 bytes in 4
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"test_32x32.mat: corrupt or truncated MATLAB"):
        load_svhn(path)
